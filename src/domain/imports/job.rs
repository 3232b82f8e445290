//! The job that drives an import: checks the Stripe key, pages through customers and their cards, has
//! Stripe forward each card to the ingest endpoint, and records each card's outcome exactly once.
//!
//! Cards are forwarded in batches, several at once; their outcomes are written as they come, a few
//! at a time (each record one transaction that moves the counters), and the position (the last customer whose cards are all recorded) moves with the last
//! batch of each customer page. A job that died resumes from that position and skips what the import
//! has already counted, so a card is never counted twice; and since the ingest endpoint answers with the
//! existing token for a payment method it has seen, a card forwarded twice never becomes two tokens.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{status_of, ImportError, Imports, BUSINESS_KEY_HEADER, IMPORT_JOB};
use crate::connectors::stripe::{Forward, StripeClient, StripeError};
use crate::domain::webhooks::ImportOutcome as EndOfImport;
use crate::jobs::{JobError, JobHandler, Ran};
use crate::model::import::{FailureReason, ImportProvider, ImportStatus};
use crate::store::{Fence, ImportFailure, ImportOutcome, ImportRecord, Job, StoreError, Ts};

/// Stripe's largest page.
const PAGE: u32 = 100;
/// Cards listed before they are forwarded together.
const BATCH: usize = 100;
/// While a batch is forwarded, its outcomes are recorded (and the counters move) every this many cards
/// or this often, whichever comes first, so that a watcher sees progress within a second.
const RECORD_EVERY: usize = 20;
const RECORD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// The forwarded body: the `/cde-import` fields, which Stripe fills in.
const FORWARD_BODY: &str = r#"{"account_number":"","expiry_month":"","expiry_year":"","cardholder_name":"","security_code":""}"#;
const REPLACEMENTS: [&str; 4] = ["card_number", "card_expiry", "cardholder_name", "card_cvc"];

#[derive(Deserialize)]
struct Payload {
    import_id: Uuid,
}

/// Where a resumed job starts: the customer page after `customers_after`, and within that page, when a
/// step ended inside it, at customer `customer`'s cards after `cards_after` (every card listed before
/// them is recorded).
#[derive(Default, Clone, Serialize, Deserialize)]
struct Position {
    customers_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cards_after: Option<String>,
}

/// A card listed and not yet counted.
struct Card {
    payment_method: String,
    customer: String,
}

/// Why the run stopped before the end.
enum Stop {
    /// The import cannot go on: it is aborted with this failure entry.
    Fatal(ImportFailure),
    /// Stripe is unavailable: the job is tried again later from its position.
    Unavailable(StripeError),
    /// The store failed, or the import could not be ended: the job is tried again.
    Failed(ImportError),
    /// The import was aborted (or ended) by someone else.
    Ended,
    /// The step used its time and saved its position: the job gives its worker back and goes on later.
    Yield,
}

impl From<StoreError> for Stop {
    fn from(err: StoreError) -> Self {
        Stop::Failed(err.into())
    }
}

impl From<ImportError> for Stop {
    fn from(err: ImportError) -> Self {
        Stop::Failed(err)
    }
}

/// An import the job could not read, move or end is tried again, as when the store fails.
impl From<ImportError> for JobError {
    fn from(err: ImportError) -> Self {
        JobError::Retry(err.to_string())
    }
}

pub struct ImportJob(pub Arc<Imports>);

#[async_trait]
impl JobHandler for ImportJob {
    fn kind(&self) -> &'static str {
        IMPORT_JOB
    }

    /// Runs one step of the import: what fits in the step's time (`ImportSettings::step`, finishing the
    /// batch under way), then the job is queued again to carry on from the position it saved.
    async fn run(&self, job: &Job) -> Result<Ran, JobError> {
        let payload: Payload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Fatal(format!("bad import job payload: {e}")))?;
        let imports = &self.0;
        let Some(import) = imports.store.get_import(payload.import_id).await? else {
            return Ok(Ran::Done);
        };
        if !status_of(&import)?.is_active() {
            return Ok(Ran::Done);
        }
        let keys = imports
            .open_keys(&import)
            .await
            .map_err(|e| JobError::Retry(format!("cannot open the import's keys: {e}")))?;
        let Some((stripe_key, ingest_key)) = keys else {
            return Ok(Ran::Done);
        };
        let settings = &imports.settings;
        let fence = job.fence();
        let run = Run {
            imports,
            import: &import,
            stripe: StripeClient::new(
                imports.http.clone(),
                &settings.stripe_api_base,
                stripe_key,
                settings.rate_limit,
                settings.retry_base,
            ),
            ingest_key: &ingest_key,
            fence: &fence,
            step_ends: std::time::Instant::now() + settings.step,
        };
        let failure = match run.drive().await {
            Ok(()) | Err(Stop::Ended) => return Ok(Ran::Done),
            Err(Stop::Yield) => return Ok(Ran::Continue),
            Err(Stop::Fatal(failure)) => failure,
            Err(Stop::Failed(err)) => return Err(err.into()),
            Err(Stop::Unavailable(err)) if job.attempts < job.max_attempts => {
                return Err(JobError::Retry(err.to_string()));
            }
            Err(Stop::Unavailable(err)) => failure(
                FailureReason::SourceUnavailable,
                json!({
                    "http_status": err.status(),
                    "stripe_error": err.detail(),
                    "detail": "Stripe kept failing (or asking to be asked again) through every try of the import; the import was aborted",
                }),
            ),
        };
        imports
            .end_fenced(import.id, &fence, EndOfImport::Aborted, Some(&failure))
            .await?;
        tracing::warn!(import = %import.id, reason = %failure.reason, "import aborted");
        Ok(Ran::Done)
    }
}

struct Run<'a> {
    imports: &'a Imports,
    import: &'a ImportRecord,
    stripe: StripeClient,
    ingest_key: &'a str,
    /// The claim of the job this run works under: every write of the run is fenced on it.
    fence: &'a Fence,
    /// When this step should give its worker back, at the next batch recorded with its position.
    step_ends: std::time::Instant,
}

impl Run<'_> {
    async fn drive(&self) -> Result<(), Stop> {
        let store = &self.imports.store;
        let id = self.import.id;
        if status_of(self.import)?.can_move_to(ImportStatus::Running) {
            // One small list call proves the key works and may read customers.
            self.stripe
                .list_customers(None, 1)
                .await
                .map_err(|e| listing_stop(e, None))?;
            if !store
                .mark_import_running(id, Some(self.fence), Ts::now())
                .await?
            {
                return Err(Stop::Ended);
            }
        }
        let mut position: Position = self
            .import
            .position
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        loop {
            let page = self
                .stripe
                .list_customers(position.customers_after.as_deref(), PAGE)
                .await
                .map_err(|e| listing_stop(e, None))?;
            // A step that ended inside this page resumes at its customer; if that customer is gone, the
            // whole page is listed again (what was counted is skipped, so nothing counts twice).
            let resume_at = position
                .customer
                .take()
                .and_then(|c| page.data.iter().position(|customer| customer.id == c));
            let mut resume_after = position.cards_after.take().filter(|_| resume_at.is_some());
            let mut batch = Vec::new();
            for customer in page.data.iter().skip(resume_at.unwrap_or(0)) {
                let mut after: Option<String> = resume_after.take();
                let resumed = after.is_some();
                loop {
                    let cards = match self
                        .stripe
                        .list_cards(&customer.id, after.as_deref(), PAGE)
                        .await
                    {
                        Ok(cards) => cards,
                        // The card the step ended at was removed since: list the customer's cards anew.
                        Err(StripeError::Api { status: 404, .. }) if resumed && after.is_some() => {
                            after = None;
                            continue;
                        }
                        // Deleted since it was listed: it has no cards to import any more.
                        Err(StripeError::Api { status: 404, .. }) => break,
                        Err(e) => return Err(listing_stop(e, Some(&customer.id))),
                    };
                    after = cards.data.last().map(|pm| pm.id.clone()).or(after);
                    let more = cards.has_more && !cards.data.is_empty();
                    batch.extend(cards.data.into_iter().map(|pm| Card {
                        payment_method: pm.id,
                        customer: customer.id.clone(),
                    }));
                    if batch.len() >= BATCH || (self.out_of_time() && !batch.is_empty()) {
                        // Everything listed up to here is in this batch or recorded before it.
                        let here = Position {
                            customers_after: position.customers_after.clone(),
                            customer: Some(customer.id.clone()),
                            cards_after: after.clone(),
                        };
                        let saved = serde_json::to_string(&here).unwrap_or_default();
                        self.process(std::mem::take(&mut batch), Some(&saved))
                            .await?;
                        if self.out_of_time() {
                            return Err(Stop::Yield);
                        }
                    }
                    if !more {
                        break;
                    }
                }
            }
            if let Some(last) = page.data.last() {
                position.customers_after = Some(last.id.clone());
            }
            let saved = serde_json::to_string(&position).unwrap_or_default();
            self.process(batch, Some(&saved)).await?;
            if !page.has_more || page.data.is_empty() {
                break;
            }
            if self.out_of_time() {
                return Err(Stop::Yield);
            }
        }
        if !self
            .imports
            .end_fenced(id, self.fence, EndOfImport::Finished, None)
            .await?
        {
            return Err(Stop::Ended);
        }
        tracing::info!(import = %id, "import finished");
        Ok(())
    }

    fn out_of_time(&self) -> bool {
        std::time::Instant::now() >= self.step_ends
    }

    /// Forwards the cards of `batch` not counted yet and records their outcomes (and `position`).
    async fn process(&self, batch: Vec<Card>, position: Option<&str>) -> Result<(), Stop> {
        let store = &self.imports.store;
        let import = self.import;
        let listed: Vec<String> = batch.iter().map(|c| c.payment_method.clone()).collect();
        let counted: HashSet<String> = store
            .counted_payment_methods(import.id, &listed)
            .await?
            .into_iter()
            .collect();
        let fresh: Vec<&Card> = batch
            .iter()
            .filter(|c| !counted.contains(&c.payment_method))
            .collect();
        let fresh_keys: Vec<String> = fresh.iter().map(|c| c.payment_method.clone()).collect();
        // Imported before (by an earlier import): in the vault already, no need to move the card again.
        let known: HashSet<String> = store
            .existing_business_keys(
                import.account_id,
                ImportProvider::Stripe.as_str(),
                &fresh_keys,
            )
            .await?
            .into_iter()
            .collect();
        let outcomes: Vec<ImportOutcome> = known
            .iter()
            .map(|pm| ImportOutcome {
                payment_method: pm.clone(),
                failure: None,
            })
            .collect();
        // Made up front (they do nothing until polled), then run a few at a time.
        let forwards: Vec<_> = fresh
            .into_iter()
            .filter(|c| !known.contains(&c.payment_method))
            .map(|card| self.forward(card))
            .collect();
        let concurrency = self.imports.settings.concurrency;
        // Forwarding goes on while outcomes are recorded: a record is one transaction of several round
        // trips (on PostgreSQL), and awaited in line it held every forward back until it committed.
        let (sent, mut received) = tokio::sync::mpsc::unbounded_channel();
        let forwarding = async move {
            let mut forwarded = stream::iter(forwards).buffer_unordered(concurrency);
            while let Some(outcome) = forwarded.next().await {
                // The recorder stopped (a fatal outcome): the forwards still in flight are dropped.
                if sent.send(outcome).is_err() {
                    break;
                }
            }
        };
        let recording = async move {
            let mut outcomes = outcomes;
            let mut recorded_at = std::time::Instant::now();
            while let Some(outcome) = received.recv().await {
                outcomes.push(outcome?);
                while let Ok(more) = received.try_recv() {
                    outcomes.push(more?);
                }
                if outcomes.len() >= RECORD_EVERY || recorded_at.elapsed() >= RECORD_INTERVAL {
                    // The position moves only with the batch's last record: a resumed job recounts
                    // nothing (counted cards are skipped) and forwards only what was not recorded.
                    self.record(&std::mem::take(&mut outcomes), None).await?;
                    recorded_at = std::time::Instant::now();
                }
            }
            Ok::<_, Stop>(outcomes)
        };
        let ((), recorded) = futures_util::future::join(forwarding, recording).await;
        let outcomes = recorded?;
        if outcomes.is_empty() && position.is_none() {
            return Ok(());
        }
        self.record(&outcomes, position).await
    }

    /// Records `outcomes` (and `position`) in one transaction; the import's counters move with them.
    async fn record(&self, outcomes: &[ImportOutcome], position: Option<&str>) -> Result<(), Stop> {
        if self
            .imports
            .store
            .record_import_outcomes(
                self.import.id,
                Some(self.fence),
                outcomes,
                position,
                Ts::now(),
            )
            .await?
        {
            let m = crate::metrics::metrics();
            for outcome in outcomes {
                m.import_card(outcome.failure.is_none());
            }
            Ok(())
        } else {
            Err(Stop::Ended)
        }
    }

    /// Has Stripe post one card to the ingest endpoint and reads what became of it.
    async fn forward(&self, card: &Card) -> Result<ImportOutcome, Stop> {
        let request = Forward {
            payment_method: &card.payment_method,
            url: &self.imports.settings.ingest_url,
            replacements: &REPLACEMENTS,
            headers: vec![
                ("Content-Type", "application/json"),
                ("X-API-Key", self.ingest_key),
                (BUSINESS_KEY_HEADER, &card.payment_method),
            ],
            body: FORWARD_BODY,
            idempotency_key: format!(
                "strongroom-import-{}-{}",
                self.import.id, card.payment_method
            ),
        };
        let context = |extra: Value| {
            let mut context = json!({
                "payment_method": card.payment_method,
                "customer": card.customer,
            });
            if let (Some(base), Value::Object(extra)) = (context.as_object_mut(), extra) {
                base.extend(extra);
            }
            context
        };
        let failure = match self.stripe.forward(&request).await {
            Ok(forwarded) => match forwarded.response_details {
                Some(response) => destination_failure(response.status, &response.body)
                    .map(|(reason, extra)| failure(reason, context(extra))),
                None => Some(failure(
                    FailureReason::DestinationError,
                    context(
                        json!({ "detail": "Stripe returned no response from the destination" }),
                    ),
                )),
            },
            Err(err) if err.is_key_refused() => return Err(Stop::Fatal(key_refused(&err))),
            // Stripe asked to try again (a rate limit, or the same card's forward still in flight from
            // another run): nothing happened to the card, so nothing is counted; the job runs again
            // later from its position and forwards it then.
            Err(err) if err.is_try_again() => return Err(Stop::Unavailable(err)),
            Err(err) if err.code() == Some("forwarding_api_inactive") => {
                return Err(Stop::Fatal(failure(
                    FailureReason::SourceError,
                    json!({
                        "http_status": err.status(),
                        "stripe_error": err.detail(),
                        "detail": "forwarding is not enabled on this Stripe account; ask Stripe to enable the Vault and Forward API for the ingest URL",
                    }),
                )))
            }
            Err(err) => {
                let reason = match err.status() {
                    Some(402 | 502 | 504) => FailureReason::DestinationUnreachable,
                    Some(500..=599) | None => FailureReason::SourceUnavailable,
                    Some(_) => FailureReason::SourceError,
                };
                Some(failure(
                    reason,
                    context(json!({ "http_status": err.status(), "stripe_error": err.detail() })),
                ))
            }
        };
        Ok(ImportOutcome {
            payment_method: card.payment_method.clone(),
            failure,
        })
    }
}

/// Reads our ingest endpoint's answer as relayed by Stripe: `None` when it holds a token.
fn destination_failure(status: u16, body: &str) -> Option<(FailureReason, Value)> {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    if status == 200 {
        let has_token = parsed
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(Value::as_str)
            .is_some_and(|id| Uuid::try_parse(id).is_ok());
        return if has_token {
            None
        } else {
            Some((
                FailureReason::DestinationError,
                json!({ "http_status": status, "detail": "the destination answered without a token" }),
            ))
        };
    }
    // Our own error body: its message and field paths never carry card data.
    let message = parsed
        .as_ref()
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .map(crate::connectors::stripe::redact);
    if status == 422 {
        let fields: Vec<Value> = parsed
            .as_ref()
            .and_then(|b| b.get("validation_errors"))
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        json!({
                            "path": e.get("path").and_then(Value::as_str).map(crate::connectors::stripe::redact),
                            "message": e.get("message").and_then(Value::as_str).map(crate::connectors::stripe::redact),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Some((
            FailureReason::InvalidCardData,
            json!({ "http_status": status, "validation_errors": fields }),
        ));
    }
    Some((
        FailureReason::DestinationError,
        json!({
            "http_status": status,
            "message": message.unwrap_or_else(|| "unreadable answer from the destination".into()),
        }),
    ))
}

fn failure(reason: FailureReason, context: Value) -> ImportFailure {
    ImportFailure {
        reason: reason.as_str().to_owned(),
        context: context.to_string(),
    }
}

fn key_refused(err: &StripeError) -> ImportFailure {
    let detail = if err.status() == Some(403) {
        "the Stripe key lacks a permission the import needs (customers and payment methods: read; forwarding requests: write)"
    } else {
        "Stripe refused the API key (wrong, revoked or expired)"
    };
    failure(
        FailureReason::SourceError,
        json!({ "http_status": err.status(), "stripe_error": err.detail(), "detail": detail }),
    )
}

/// A listing that failed: the key refused ends the import; anything passing is retried later.
fn listing_stop(err: StripeError, customer: Option<&str>) -> Stop {
    match err.status() {
        Some(401 | 403) => Stop::Fatal(key_refused(&err)),
        _ if err.is_try_again() => Stop::Unavailable(err),
        Some(500..=599) | None => Stop::Unavailable(err),
        Some(status) => Stop::Fatal(failure(
            FailureReason::SourceError,
            json!({
                "customer": customer,
                "http_status": status,
                "stripe_error": err.detail(),
                "detail": "Stripe refused to list the account's cards",
            }),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_answer_decides_the_outcome() {
        let token = r#"{"id":"0b0b0e0e-1111-4222-8333-444455556666"}"#;
        assert!(destination_failure(200, token).is_none());
        assert_eq!(
            destination_failure(200, "oops").unwrap().0.as_str(),
            "destination_error"
        );
        let invalid = r#"{"code":422,"message":"Validation error","validation_errors":[{"path":"$.expiry_year","message":"the card has expired"}]}"#;
        let (reason, context) = destination_failure(422, invalid).unwrap();
        assert_eq!(reason.as_str(), "invalid_card_data");
        assert_eq!(context["validation_errors"][0]["path"], "$.expiry_year");
        let (reason, context) =
            destination_failure(401, r#"{"message":"No valid means"}"#).unwrap();
        assert_eq!(
            (reason.as_str(), context["http_status"].as_u64()),
            ("destination_error", Some(401))
        );
    }
}
