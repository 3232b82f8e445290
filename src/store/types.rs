//! Records that cross the storage boundary, and `Ts`, the one timestamp type both backends store natively
//! (SQLite: microseconds as INTEGER, so rows sort exactly; PostgreSQL: TIMESTAMPTZ).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A UTC instant with microsecond precision (the precision PostgreSQL keeps), so that what is written
/// is exactly what is read back on either backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(DateTime<Utc>);

impl Ts {
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// Truncates to whole microseconds.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        let micros = at.timestamp_micros();
        Self(DateTime::from_timestamp_micros(micros).unwrap_or(at))
    }

    pub fn from_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).map(Self)
    }

    pub fn micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    pub fn datetime(&self) -> DateTime<Utc> {
        self.0
    }

    pub fn plus(&self, duration: std::time::Duration) -> Self {
        let delta = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        Self::from_datetime(
            self.0
                .checked_add_signed(delta)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    pub fn minus(&self, duration: std::time::Duration) -> Self {
        let delta = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        Self::from_datetime(
            self.0
                .checked_sub_signed(delta)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        )
    }

    /// RFC 3339 in UTC with a `Z`, as the wire contract asks.
    pub fn rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.rfc3339())
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

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

/// An API key as stored: only the SHA-256 digest of its secret.
#[derive(Clone, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub label: String,
    pub secret_digest: Vec<u8>,
    pub created_at: Ts,
    pub revoked_at: Option<Ts>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("label", &self.label)
            .field("secret_digest", &"****")
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// What authentication needs in one read: the key and its account's features.
#[derive(Clone, sqlx::FromRow)]
pub struct KeyWithAccount {
    pub key_id: Uuid,
    pub account_id: Uuid,
    pub secret_digest: Vec<u8>,
    pub revoked_at: Option<Ts>,
    #[sqlx(try_from = "String")]
    pub features: FeatureSet,
}

/// A stored idempotency record; `response_status` is `None` while the first request is in flight.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct IdempotencyRecord {
    pub request_hash: Vec<u8>,
    pub created_at: Ts,
    pub response_status: Option<i32>,
    pub response_body: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

impl TryFrom<String> for JobStatus {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "done" => Ok(Self::Done),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown job status `{other}`")),
        }
    }
}

/// A row of the durable job table.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub payload: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: Ts,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Ts>,
    pub last_error: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: Uuid,
    pub kind: String,
    pub payload: String,
    pub max_attempts: i32,
    pub run_at: Ts,
}

/// One line of the audit trail. `target` names what was acted on (an id), never card data.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    /// Assigned by the database in insertion order; 0 until stored.
    pub id: i64,
    pub at: Ts,
    pub account_id: Option<Uuid>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
}

impl AuditEvent {
    pub fn new(
        account_id: Option<Uuid>,
        actor: impl Into<String>,
        action: &str,
        target: Option<String>,
        outcome: &str,
    ) -> Self {
        Self {
            id: 0,
            at: Ts::now(),
            account_id,
            actor: actor.into(),
            action: action.to_owned(),
            target,
            outcome: outcome.to_owned(),
        }
    }
}

/// An account's data key and fingerprint key, each wrapped (AES-256-GCM) by master key `master_version`.
#[derive(Clone, sqlx::FromRow)]
pub struct AccountKeysRecord {
    pub account_id: Uuid,
    pub dek_version: i32,
    pub master_version: i32,
    pub wrapped_dek: Vec<u8>,
    pub wrapped_fingerprint_key: Vec<u8>,
    pub created_at: Ts,
    pub rewrapped_at: Option<Ts>,
}

/// A token row. `sealed_card` is the only place the card number lives, sealed; `fingerprint` is keyed.
#[derive(Clone, sqlx::FromRow)]
pub struct TokenRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub created_at: Ts,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub cardholder_name: Option<String>,
    pub issuer_identification_number: String,
    pub masked_account_number: String,
    pub account_number_last_four: String,
    pub account_number_length: i32,
    pub scheme: String,
    pub status: String,
    pub fingerprint: Vec<u8>,
    pub sealed_card: Vec<u8>,
    pub business_key: Option<String>,
    pub import_provider: Option<String>,
    pub expires_at: Option<Ts>,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("masked_account_number", &self.masked_account_number)
            .finish_non_exhaustive()
    }
}

/// Which tokens of an account to list: created in `[from, until)`, oldest or newest first.
#[derive(Clone, Copy, Debug)]
pub struct TokenQuery {
    pub account_id: Uuid,
    pub from: Option<Ts>,
    pub until: Option<Ts>,
    pub oldest_first: bool,
    pub limit: i64,
    pub offset: i64,
}
