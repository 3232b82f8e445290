//! The token object: what `GET /tokens/{id}` answers and what `token.*` webhooks carry, with its typed
//! values. Built from a stored token by `domain::objects`; the card number itself never gets here.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::card::Scheme;
use super::import::ImportProvider;
use super::{string_enum, Timestamp};

string_enum! {
    /// Whether a token can be used.
    pub enum TokenStatus {
        Active = "active",
        Invalid = "invalid",
    }
}

string_enum! {
    /// The spec's `NetworkTokenStatus`. This server has no scheme connection, so its tokens are all
    /// `not_available`; the other values are the spec's, never emitted.
    pub enum NetworkTokenStatus {
        Active = "active",
        Inactive = "inactive",
        Pending = "pending",
        Deleted = "deleted",
        Failed = "failed",
        NotAvailable = "not_available",
    }
}

string_enum! {
    /// The spec's ID&V of a token. This server does none, so its tokens are all `none`; the other
    /// values are the spec's, never emitted.
    pub enum IdentityAndVerification {
        None = "none",
        Checked = "checked",
        Skipped = "skipped",
    }
}

/// A Commerce token: the card's non-secret facts. The card number itself never leaves the vault.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = HellgateToken)]
pub struct Token {
    pub id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub expiry_month: i32,
    pub expiry_year: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cardholder_name: Option<String>,
    /// First 8 digits for numbers of 16 digits or more, else as many as the mask shows.
    pub issuer_identification_number: String,
    /// First 6 (fewer under 16 digits), `X` for each hidden digit (at least 6), last 4.
    pub masked_account_number: String,
    pub account_number_last_four: String,
    pub account_number_length: i32,
    pub scheme: Scheme,
    /// `active` or `invalid`.
    pub status: TokenStatus,
    /// Always `not_available`: this server has no scheme connection for network tokens.
    pub network_token_status: NetworkTokenStatus,
    pub card_art_url: String,
    /// Always `none`.
    pub identity_and_verification: IdentityAndVerification,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_provider: Option<ImportProvider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}
