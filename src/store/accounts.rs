//! Accounts (the tenants) and their gated features: `AccountStore` and its SQL, including the one-time
//! bootstrap of the default account with its first key.

use std::collections::BTreeSet;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiKeyRecord, AuditEvent, StoreResult, Ts};

/// Gated capabilities of an account.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Feature {
    /// May send full card data to `POST /cde-import`.
    CdeImport,
}

impl Feature {
    pub const ALL: [Feature; 1] = [Feature::CdeImport];

    pub fn as_str(&self) -> &'static str {
        match self {
            Feature::CdeImport => "cde_import",
        }
    }
}

impl FromStr for Feature {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Feature::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown feature `{s}`"))
    }
}

/// The features of an account, stored as a comma-separated list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FeatureSet(BTreeSet<Feature>);

impl FeatureSet {
    pub fn all() -> Self {
        Self(Feature::ALL.into_iter().collect())
    }

    pub fn contains(&self, feature: Feature) -> bool {
        self.0.contains(&feature)
    }

    pub fn to_db(&self) -> String {
        self.0
            .iter()
            .map(Feature::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn iter(&self) -> impl Iterator<Item = Feature> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Feature> for FeatureSet {
    fn from_iter<I: IntoIterator<Item = Feature>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl TryFrom<String> for FeatureSet {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value
            .split(',')
            .filter(|s| !s.is_empty())
            .map(Feature::from_str)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub features: FeatureSet,
    pub created_at: Ts,
}

#[async_trait]
pub trait AccountStore {
    /// Inserts `account` with its first `key` and `audit` (the events recording both) in one commit.
    async fn insert_account(
        &self,
        account: &Account,
        key: &ApiKeyRecord,
        audit: &[AuditEvent],
    ) -> StoreResult<()>;
    async fn get_account(&self, id: Uuid) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// Creates `account` with `key` only if the database has never had an account bootstrapped and holds
    /// no account, writing `audit` with them; returns whether it did (false: nothing written). Safe when
    /// several nodes start at once.
    async fn bootstrap_default_account(
        &self,
        account: &Account,
        key: &ApiKeyRecord,
        audit: &[AuditEvent],
    ) -> StoreResult<bool>;
}

pub(crate) const ACCOUNT_INSERT: &str =
    "INSERT INTO accounts (id, name, features, created_at) VALUES ($1, $2, $3, $4)";

macro_rules! impl_account_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::accounts::ACCOUNT_INSERT;
            use $crate::store::audit::write_audits;
            use $crate::store::backend::SqlBackend;
            use $crate::store::keys::API_KEY_INSERT;
            use $crate::store::{Account, AccountStore, ApiKeyRecord, AuditEvent, StoreResult};

            type Db = <$store as SqlBackend>::DB;

            #[async_trait::async_trait]
            impl AccountStore for $store {
                async fn insert_account(&self, a: &Account, k: &ApiKeyRecord, audit: &[AuditEvent]) -> StoreResult<()> {
                    let mut tx = self.pool().begin().await?;
                    sqlx::query(ACCOUNT_INSERT)
                        .bind(a.id)
                        .bind(&a.name)
                        .bind(a.features.to_db())
                        .bind(a.created_at)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(API_KEY_INSERT)
                        .bind(k.id)
                        .bind(k.account_id)
                        .bind(&k.label)
                        .bind(&k.secret_digest)
                        .bind(k.created_at)
                        .bind(k.revoked_at)
                        .execute(&mut *tx)
                        .await?;
                    write_audits::<Db>(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_account(&self, id: Uuid) -> StoreResult<Option<Account>> {
                    Ok(sqlx::query_as("SELECT id, name, features, created_at FROM accounts WHERE id = $1")
                        .bind(id)
                        .fetch_optional(self.pool())
                        .await?)
                }

                async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
                    Ok(sqlx::query_as(
                        "SELECT id, name, features, created_at FROM accounts ORDER BY created_at, id",
                    )
                    .fetch_all(self.pool())
                    .await?)
                }

                async fn bootstrap_default_account(
                    &self,
                    a: &Account,
                    k: &ApiKeyRecord,
                    audit: &[AuditEvent],
                ) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    let claimed = sqlx::query(
                        "INSERT INTO meta (key, value) SELECT 'bootstrap', $1 \
                         WHERE NOT EXISTS (SELECT 1 FROM accounts) ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(a.id.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !claimed {
                        return Ok(false);
                    }
                    sqlx::query(ACCOUNT_INSERT)
                        .bind(a.id)
                        .bind(&a.name)
                        .bind(a.features.to_db())
                        .bind(a.created_at)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(API_KEY_INSERT)
                        .bind(k.id)
                        .bind(k.account_id)
                        .bind(&k.label)
                        .bind(&k.secret_digest)
                        .bind(k.created_at)
                        .bind(k.revoked_at)
                        .execute(&mut *tx)
                        .await?;
                    write_audits::<Db>(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(true)
                }
            }
        };
    };
}

pub(crate) use impl_account_store;
