//! The one mapping from stored records to the public objects of `model/` (tokens, imports, import
//! failures, accounts): what the API answers and what the webhooks carry are built here and nowhere else.
//! A stored status no string table knows is a corrupt row, not a value to pass on.

use std::str::FromStr;

use serde_json::Value;

use crate::model::account::Account;
use crate::model::card::Scheme;
use crate::model::import::{Import, ImportFailure, StripeSettings};
use crate::model::token::{IdentityAndVerification, NetworkTokenStatus, Token};
use crate::model::{Timestamp, UnknownValue};
use crate::store::{
    Account as StoredAccount, ImportFailure as ImportFailureRecord, ImportRecord, StoreError,
    TokenRecord, Ts,
};

fn stored<T: FromStr<Err = UnknownValue>>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|e: UnknownValue| StoreError::Corrupt(e.to_string()))
}

fn at(ts: Ts) -> Timestamp {
    Timestamp(ts.datetime())
}

/// The token as `GET /tokens/{id}` shows it; links start with `public_url`.
pub fn token(t: TokenRecord, public_url: &str) -> Result<Token, StoreError> {
    Ok(Token {
        card_art_url: format!("{public_url}/tokens/card-art/{}", t.id),
        id: t.id,
        created_at: at(t.created_at),
        expiry_month: t.expiry_month,
        expiry_year: t.expiry_year,
        cardholder_name: t.cardholder_name,
        issuer_identification_number: t.issuer_identification_number,
        masked_account_number: t.masked_account_number,
        account_number_last_four: t.account_number_last_four,
        account_number_length: t.account_number_length,
        scheme: Scheme::parse(&t.scheme),
        status: stored(&t.status)?,
        network_token_status: NetworkTokenStatus::NotAvailable,
        identity_and_verification: IdentityAndVerification::None,
        business_key: t.business_key,
        import_provider: t.import_provider.as_deref().map(stored).transpose()?,
        expires_at: t.expires_at.map(at),
    })
}

/// The import as `GET /tokens/imports/{id}` shows it: its keys never, the Stripe key as `[REDACTED]`.
pub fn import(i: ImportRecord) -> Result<Import, StoreError> {
    Ok(Import {
        id: i.id,
        created_at: at(i.created_at),
        finished_at: i.finished_at.map(at),
        provider: stored(&i.provider)?,
        status: stored(&i.status)?,
        stripe: StripeSettings::REDACTED,
        attemts: i.attempts,
        attempts: i.attempts,
        successes: i.successes,
        failures: i.failures,
    })
}

/// One failure entry of an import; a context that does not read as JSON shows as `null`.
pub fn import_failure(f: ImportFailureRecord) -> Result<ImportFailure, StoreError> {
    Ok(ImportFailure {
        reason: stored(&f.reason)?,
        context: serde_json::from_str(&f.context).unwrap_or(Value::Null),
    })
}

/// The account of the API key in use, as `GET /account` shows it.
pub fn account(a: StoredAccount) -> Account {
    Account {
        id: a.id,
        name: a.name,
        features: a.features.iter().map(|f| f.as_str()).collect(),
        created_at: at(a.created_at),
    }
}
