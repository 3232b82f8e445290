//! The account object: what `GET /account` answers about the account of the API key in use. Built
//! from the stored account by `domain::objects`; keys and their digests never get here.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Timestamp;

#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = AccountResponse)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    /// Gated features enabled for the account, such as `cde_import`.
    pub features: Vec<&'static str>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}
