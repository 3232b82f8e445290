//! The token import object and its failure entries, as `GET /tokens/imports…` answers them and the
//! `import.*` webhooks carry them; and `ImportStatus`, which holds the import's one state machine.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{string_enum, Timestamp};

string_enum! {
    /// Where an import stands. `preparing` → `running` → `finished`; either active status → `aborted`.
    pub enum ImportStatus {
        Preparing = "preparing",
        Running = "running",
        Finished = "finished",
        Aborted = "aborted",
    }
}

impl ImportStatus {
    /// Preparing or running: the import holds its keys and a second one of the account is refused.
    pub fn is_active(self) -> bool {
        matches!(self, ImportStatus::Preparing | ImportStatus::Running)
    }

    /// Finished or aborted: nothing moves it any more.
    pub fn has_ended(self) -> bool {
        !self.is_active()
    }

    /// The allowed moves: the key check passed (`preparing` → `running`); every card was seen
    /// (`running` → `finished`, never straight from `preparing`); stopped by the client or by a fault
    /// (`preparing` or `running` → `aborted`).
    pub fn can_move_to(self, next: ImportStatus) -> bool {
        use ImportStatus::*;
        matches!(
            (self, next),
            (Preparing, Running) | (Running, Finished) | (Preparing | Running, Aborted)
        )
    }

    /// The statuses `next` can be reached from, in table order.
    pub fn sources_of(next: ImportStatus) -> impl Iterator<Item = ImportStatus> {
        Self::ALL
            .iter()
            .copied()
            .filter(move |from| from.can_move_to(next))
    }
}

string_enum! {
    /// The processor an import pulls cards from.
    pub enum ImportProvider {
        Stripe = "stripe",
    }
}

string_enum! {
    /// Why a card, or the whole import, failed.
    pub enum FailureReason {
        /// The ingest endpoint did not answer with a token.
        DestinationError = "destination_error",
        /// Stripe refused the request (the key, a permission, forwarding not enabled).
        SourceError = "source_error",
        /// Stripe was unavailable.
        SourceUnavailable = "source_unavailable",
        /// Stripe could not reach the ingest endpoint.
        DestinationUnreachable = "destination_unreachable",
        /// The forwarded card data failed validation.
        InvalidCardData = "invalid_card_data",
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StripeSettings {
    /// Always `[REDACTED]`: the key is never shown again.
    pub api_key: &'static str,
}

impl StripeSettings {
    pub const REDACTED: StripeSettings = StripeSettings {
        api_key: "[REDACTED]",
    };
}

/// A token import and its progress. `attemts` is the spec's spelling; `attempts` carries the same number.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = TokensImport)]
pub struct Import {
    pub id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Only once the import finished or was aborted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    /// `stripe`.
    pub provider: ImportProvider,
    /// `preparing`, `running`, `finished` or `aborted`.
    pub status: ImportStatus,
    pub stripe: StripeSettings,
    pub attemts: i64,
    pub attempts: i64,
    pub successes: i64,
    pub failures: i64,
}

/// Why one card, or the whole import, failed. `context` names the payment method, the customer, the HTTP
/// status and Stripe's error code or message; never card data.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = TokensImportFailure)]
pub struct ImportFailure {
    /// `destination_error`, `source_error`, `source_unavailable`, `destination_unreachable` or
    /// `invalid_card_data`.
    pub reason: FailureReason,
    #[schema(value_type = Object)]
    pub context: Value,
}

#[cfg(test)]
mod tests {
    use super::ImportStatus::{self, *};

    #[test]
    fn an_import_finishes_only_from_running_and_aborts_from_either_active_status() {
        let sources = |next| ImportStatus::sources_of(next).collect::<Vec<_>>();
        assert_eq!(sources(Running), [Preparing]);
        assert_eq!(sources(Finished), [Running]);
        assert_eq!(sources(Aborted), [Preparing, Running]);
        assert!(sources(Preparing).is_empty());
        for ended in [Finished, Aborted] {
            assert!(ended.has_ended());
            assert!(ImportStatus::ALL.iter().all(|s| !ended.can_move_to(*s)));
        }
    }
}
