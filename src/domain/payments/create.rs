//! Creating a payment: checking a merchant-initiated payment against its initial one, saving the new
//! payment `processing` with a recovery job, and the authorization through the routed processor (also
//! run by that recovery job if the node dies first).

use serde_json::json;
use uuid::Uuid;

use super::abandon::abandon_job;
use super::input::PaymentInput;
use super::jobs::{new_job, JobPayload, AUTHORIZE_JOB};
use super::{
    change, failure_details, next, set_status, state, transaction, PaymentError, Payments,
};
use crate::connectors::processor::{Authorization, Outcome};
use crate::domain::routing::Facts;
use crate::model::card::CardData;
use crate::model::payment::{CaptureMode, Payment, PaymentStatus, TransactionKind, UseCase};
use crate::store::{Fence, JobLease, NewJob, PaymentRecord, PaymentWrite, TokenRecord, Ts};

impl Payments {
    /// Creates a payment and authorizes it through the routed processor before answering. `initial` is the
    /// earlier payment of a merchant-initiated one.
    pub async fn create(
        &self,
        account_id: Uuid,
        actor: &str,
        use_case: UseCase,
        input: PaymentInput,
        initial: Option<Uuid>,
    ) -> Result<Payment, PaymentError> {
        Ok(self
            .create_record(account_id, actor, use_case, input, initial)
            .await?
            .try_into()?)
    }

    async fn create_record(
        &self,
        account_id: Uuid,
        actor: &str,
        use_case: UseCase,
        input: PaymentInput,
        initial: Option<Uuid>,
    ) -> Result<PaymentRecord, PaymentError> {
        let (token_id, currency_code, initial_id) = match initial {
            None => (
                input.token_id.ok_or(PaymentError::Invalid(
                    "$.source.token_id",
                    "is required".into(),
                ))?,
                input.currency_code.clone().ok_or(PaymentError::Invalid(
                    "$.currency_code",
                    "is required".into(),
                ))?,
                None,
            ),
            Some(initial_id) => {
                let initial = self.record(account_id, initial_id).await?;
                check_initial(&initial, use_case, &input)?;
                (
                    initial.token_id,
                    initial.currency_code.clone(),
                    Some(initial.id),
                )
            }
        };
        let token = self
            .tokens
            .get(account_id, token_id)
            .await?
            .ok_or_else(|| {
                PaymentError::Invalid(
                    "$.source.token_id",
                    "no token of this account has this id".into(),
                )
            })?;
        let route = self
            .router
            .route(
                account_id,
                &Facts {
                    currency_code: &currency_code,
                    scheme: &token.scheme,
                    use_case,
                    amount: input.amount,
                },
            )
            .await?;
        let now = Ts::now();
        let source = card_source(&token);
        let (start, _) = state::PAYMENT_START;
        let capture_mode = if input.manual_capture {
            CaptureMode::Manual
        } else {
            CaptureMode::Automatic
        };
        let payment = PaymentRecord {
            id: crate::new_id(),
            account_id,
            version: 1,
            created_at: now,
            updated_at: now,
            use_case: use_case.as_str().to_owned(),
            status: start.as_str().to_owned(),
            currency_code,
            reference: input.reference,
            capture_mode: capture_mode.as_str().to_owned(),
            amount_requested: input.amount,
            amount_authorized: 0,
            amount_captured: 0,
            amount_voided: 0,
            amount_refunded: 0,
            amount_refund_reserved: 0,
            capture_requested: None,
            token_id,
            source,
            flow_matrix_rule: route.rule.clone(),
            processor: route.first().to_owned(),
            processor_reference: None,
            failure_details: None,
            initial_payment_id: initial_id,
            recurring_frequency: input.recurring_frequency,
            recurring_expiry: input.recurring_expiry,
            metadata: input
                .metadata
                .map(|m| serde_json::Value::Object(m).to_string()),
        };
        // The recovery job runs only if this node dies before the authorization is saved.
        let payload = JobPayload {
            account_id,
            payment_id: payment.id,
            refund_id: None,
        };
        // Written leased to this node, which renews the lease while it authorizes: the job is taken
        // over (and authorizes) only once the lease ran out, i.e. this node died or stopped mid-way.
        let recovery = NewJob {
            lease: Some(JobLease {
                owner: self.lease_owner.clone(),
                until: now.plus(self.recovery_lease),
            }),
            ..new_job(AUTHORIZE_JOB, &payload, now)
        };
        let outbox = self.webhooks.payment_created(&payment).await?;
        // The card is opened before the payment is saved, so that the audit row of that access joins
        // the payment's commit instead of costing a durable write of its own.
        let (card, audit) = self.tokens.open_for_commit(account_id, actor, &token).await;
        let fence = Fence {
            job: recovery.id,
            owner: self.lease_owner.clone(),
            generation: 1,
        };
        self.writer
            .write(PaymentWrite::Insert {
                payment: payment.clone(),
                job: Some(recovery),
                outbox,
                audit: Some(audit),
            })
            .await?;
        let renewer = self.keep_leased(fence.clone());
        // From here on the payment exists: a failure must not answer 5xx (the client would retry with
        // its idempotency key and make a second payment), since the recovery job finishes this one.
        let authorized = match card {
            Ok(card) => {
                crate::metrics::metrics().card_read("payment");
                let opened = Some((token, card));
                self.authorize_opened(&payment, use_case.customer_initiated(), opened, Some(fence))
                    .await
            }
            Err(err) => Err(err.into()),
        };
        renewer.abort();
        match authorized {
            Ok(authorized) => Ok(authorized),
            Err(err) => {
                tracing::warn!(payment = %payment.id, error = %err, "authorization not saved; recovery will finish it");
                Ok(self
                    .store
                    .get_payment(account_id, payment.id)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(payment))
            }
        }
    }

    /// Renews the lease of a payment's recovery job every third of it until aborted. The job then stays
    /// leased until the lease runs out after the request: it runs, finds the payment authorized (or not,
    /// if the authorization was not saved) and ends, with no write on the request's path.
    fn keep_leased(&self, fence: Fence) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let lease = self.recovery_lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let now = Ts::now();
                match store.renew_job_lease(&fence, now.plus(lease), now).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(err) => {
                        tracing::warn!(job = %fence.job, error = %err, "could not renew a recovery job's lease")
                    }
                }
            }
        })
    }

    /// Authorizes a payment still `processing` and saves the outcome; used at creation and by recovery.
    pub(super) async fn authorize(
        &self,
        payment: &PaymentRecord,
        actor: &str,
        customer_present: bool,
    ) -> Result<PaymentRecord, PaymentError> {
        let token = self
            .tokens
            .get(payment.account_id, payment.token_id)
            .await?;
        let opened = match token {
            Some(token) => {
                let card = self.tokens.open(payment.account_id, actor, &token).await?;
                crate::metrics::metrics().card_read("payment");
                Some((token, card))
            }
            None => None,
        };
        self.authorize_opened(payment, customer_present, opened, None)
            .await
    }

    /// `authorize` with the token and its card already opened (and that access audited); `None`: the
    /// token is gone. `recovery` is this node's claim on the payment's recovery job, deleted with the
    /// outcome's commit.
    async fn authorize_opened(
        &self,
        payment: &PaymentRecord,
        customer_present: bool,
        opened: Option<(TokenRecord, CardData)>,
        recovery: Option<Fence>,
    ) -> Result<PaymentRecord, PaymentError> {
        let capture = crate::domain::objects::stored::<CaptureMode>(&payment.capture_mode)?
            == CaptureMode::Automatic;
        let (outcome, current) = match opened {
            Some((token, card)) => {
                // The payment is already recorded `processing`: a cache that does not answer in
                // time (logged there) means going on without the code rather than leaving it half made.
                let code = if customer_present {
                    self.tokens
                        .cvc
                        .take(payment.account_id, token.id)
                        .await
                        .ok()
                        .flatten()
                } else {
                    None
                };
                let network_transaction_id = match payment.initial_payment_id {
                    Some(initial) => self.store.get_network_transaction_id(initial).await?,
                    None => None,
                };
                let request = Authorization {
                    payment_id: payment.id,
                    amount: payment.amount_requested,
                    currency_code: &payment.currency_code,
                    card: &card,
                    security_code: code.as_ref(),
                    capture,
                    merchant_initiated: payment.initial_payment_id.is_some(),
                    use_case: crate::domain::objects::stored(&payment.use_case)?,
                    network_transaction_id: network_transaction_id.as_deref(),
                };
                self.authorize_routed(payment, &request).await?
            }
            None => (
                Outcome::Declined {
                    classifier: "TOKEN_DELETED",
                    message: "The token was deleted",
                },
                payment.clone(),
            ),
        };
        // After a failover the payment is a version further, at the processor that answered.
        let payment = &current;
        let mut updated = next(payment);
        let mut follow_up = None;
        match &outcome {
            Outcome::Approved { reference, .. } => {
                updated.amount_authorized = payment.amount_requested;
                updated.processor_reference = Some(reference.clone());
                if capture {
                    set_status(&mut updated, PaymentStatus::Captured);
                    updated.amount_captured = payment.amount_requested;
                    follow_up = Some(self.settle_job(payment));
                } else {
                    set_status(&mut updated, PaymentStatus::Authorized);
                }
            }
            _ => {
                set_status(&mut updated, PaymentStatus::Failed);
                updated.failure_details = failure_details(&outcome);
                // The last processor may have approved although no answer came: undo that there.
                if outcome.unanswered() {
                    follow_up = Some(abandon_job(
                        payment.account_id,
                        payment.id,
                        &payment.processor,
                    ));
                }
            }
        }
        let mut step = change(payment, updated.clone());
        step.transaction = Some(transaction(
            payment,
            TransactionKind::Authorization,
            payment.amount_requested,
            &outcome,
        ));
        step.job = follow_up;
        // Kept in the same commit as the authorization it belongs to.
        if let Outcome::Approved {
            network_transaction_id: Some(id),
            ..
        } = &outcome
        {
            step.network_transaction_id = Some(id.clone());
        }
        if self.apply_retiring(&mut step, recovery).await? {
            Ok(updated)
        } else {
            // Recovery got there first: answer with what is stored.
            self.record(payment.account_id, payment.id).await
        }
    }
}

/// A merchant-initiated payment continues an authorized initial payment of the matching use case, for
/// no more than it, in its currency.
fn check_initial(
    initial: &PaymentRecord,
    use_case: UseCase,
    input: &PaymentInput,
) -> Result<(), PaymentError> {
    let expected = use_case.initial().unwrap_or(UseCase::Recurring);
    if initial.use_case.parse::<UseCase>().ok() != Some(expected) {
        return Err(PaymentError::NotFound);
    }
    if initial.amount_authorized == 0 {
        return Err(PaymentError::Conflict(
            "The initial payment was never authorized".into(),
        ));
    }
    if input.amount > initial.amount_requested {
        return Err(PaymentError::Invalid(
            "$.amount",
            "must not exceed the amount of the initial payment".into(),
        ));
    }
    if input
        .currency_code
        .as_deref()
        .is_some_and(|c| c != initial.currency_code)
    {
        return Err(PaymentError::Invalid(
            "$.currency_code",
            "must be the currency of the initial payment".into(),
        ));
    }
    Ok(())
}

/// The `source` of a payment on `token`: the card's non-secret facts as JSON. `cardholder_name` is
/// always there (`null` when the token has none), as the spec's `PaymentSourceCard` requires it.
pub(super) fn card_source(token: &TokenRecord) -> String {
    let source = json!({
        "type": "card",
        "cardholder_name": token.cardholder_name,
        "expiry_month": token.expiry_month,
        "expiry_year": token.expiry_year,
        "masked_account_number": token.masked_account_number,
        "pan_type": "FPAN",
        "issuer": {"identification_number": token.issuer_identification_number, "scheme": token.scheme},
    });
    source.to_string()
}
