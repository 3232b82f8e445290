//! The one mapping from stored records to the public objects of `model/`: tokens, imports, import
//! failures and accounts here, payments, refunds and transactions in `payments.rs`. What the API answers
//! and what the webhooks carry are built here and nowhere else; a stored status no string table knows is
//! a corrupt row, not a value to pass on.

mod payments;

use std::str::FromStr;

use serde_json::Value;

use crate::model::account::Account;
use crate::model::card::Scheme;
use crate::model::import::{Import, ImportFailure, StripeSettings};
use crate::model::token::{IdentityAndVerification, NetworkTokenStatus, Token};
use crate::model::{Timestamp, UnknownValue};
use crate::store::{
    Account as StoredAccount, ImportFailure as ImportFailureRecord, ImportRecord, StoreError,
    TokenListing, Ts,
};

/// A stored spelling, read through its string table; one no table knows means a damaged row.
pub(crate) fn stored<T: FromStr<Err = UnknownValue>>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|e: UnknownValue| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn at(ts: Ts) -> Timestamp {
    Timestamp(ts.datetime())
}

/// The token as `GET /tokens/{id}` shows it; links start with `public_url`.
pub fn token(t: impl Into<TokenListing>, public_url: &str) -> Result<Token, StoreError> {
    let t = t.into();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenRecord;
    use uuid::Uuid;

    fn token_record() -> TokenRecord {
        TokenRecord {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            created_at: Ts::from_micros(1_500_000).unwrap(),
            expiry_month: 4,
            expiry_year: 2031,
            cardholder_name: None,
            issuer_identification_number: "41111111".into(),
            masked_account_number: "411111XXXXXX1111".into(),
            account_number_last_four: "1111".into(),
            account_number_length: 16,
            scheme: "VISA".into(),
            status: "active".into(),
            fingerprint: vec![1],
            sealed_card: vec![2],
            business_key: Some("pm_1".into()),
            import_provider: Some("stripe".into()),
            expires_at: None,
            keyed_id: false,
        }
    }

    #[test]
    fn a_token_serialises_field_for_field_as_the_wire_shows_it() {
        let json = serde_json::to_string(&token(token_record(), "http://h").unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"id":"00000000-0000-0000-0000-000000000000","created_at":"1970-01-01T00:00:01.500Z","expiry_month":4,"expiry_year":2031,"issuer_identification_number":"41111111","masked_account_number":"411111XXXXXX1111","account_number_last_four":"1111","account_number_length":16,"scheme":"VISA","status":"active","network_token_status":"not_available","card_art_url":"http://h/tokens/card-art/00000000-0000-0000-0000-000000000000","identity_and_verification":"none","business_key":"pm_1","import_provider":"stripe"}"#
        );
    }

    #[test]
    fn an_import_shows_both_spellings_of_its_counter_and_never_its_keys() {
        let record = ImportRecord {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            provider: "stripe".into(),
            status: "aborted".into(),
            sealed_api_key: Some(vec![1]),
            sealed_ingest_key: Some(vec![2]),
            ingest_key_digest: Some(vec![3]),
            position: None,
            attempts: 3,
            successes: 2,
            failures: 1,
            created_at: Ts::from_micros(0).unwrap(),
            updated_at: Ts::from_micros(0).unwrap(),
            finished_at: Some(Ts::from_micros(2_000_000).unwrap()),
        };
        assert_eq!(
            serde_json::to_string(&import(record).unwrap()).unwrap(),
            r#"{"id":"00000000-0000-0000-0000-000000000000","created_at":"1970-01-01T00:00:00Z","finished_at":"1970-01-01T00:00:02Z","provider":"stripe","status":"aborted","stripe":{"api_key":"[REDACTED]"},"attemts":3,"attempts":3,"successes":2,"failures":1}"#
        );
    }

    #[test]
    fn a_stored_status_no_table_knows_is_a_corrupt_row() {
        let mut record = token_record();
        record.status = "Active".into();
        assert!(matches!(
            token(record, ""),
            Err(StoreError::Corrupt(m)) if m == "not a known TokenStatus"
        ));
    }
}
