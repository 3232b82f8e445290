//! `POST /forward`, the compliance proxy: a client's request relayed to an allow-listed destination with
//! a token's card filled into its placeholders, the answer relayed back with the card number masked.
//! Owns the flow's order of checks, the opening of the card, the security code's use and the audit row.

mod audit;
pub mod mask;
pub mod template;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Url;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::destinations::DestinationCache;
use super::tokens::{TokenError, Tokens};
use super::InternalError;
use crate::connectors::forward::{Answer, ForwardClient, SendError};
use crate::connectors::guard::{literal_ip, refusal};
use crate::store::{Action, AuditEvent, DynStore, StoreError, TokenRecord};
use crate::vault::cvc::CacheUnavailable;
use crate::vault::VaultError;
use template::{Field, Syntax, Template, Values};

/// What a client asked to forward. `headers` are already stripped of Strongroom's own and hop-by-hop.
pub struct ForwardRequest<'a> {
    pub account_id: Uuid,
    /// Who asked (`key:<id>`), for the audit trail.
    pub actor: &'a str,
    pub token_id: Uuid,
    pub destination: Url,
    pub headers: HeaderMap,
    pub body: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A fault of the body (`$`); the message names the placeholder, never a value.
    #[error("invalid body: {0}")]
    InvalidBody(String),
    #[error("no such token")]
    UnknownToken,
    #[error("the destination is not allow-listed")]
    NotAllowed,
    #[error("the security code is no longer cached")]
    SecurityCodeGone,
    /// The security-code cache did not answer in time: whether the code is there is unknown.
    #[error(transparent)]
    CodeCache(#[from] CacheUnavailable),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// The failures of reading the token, as the forward reports them.
impl From<TokenError> for ForwardError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::Vault(e) => ForwardError::Vault(e),
            TokenError::Store(e) => ForwardError::Store(e),
            TokenError::CodeCache(e) => ForwardError::CodeCache(e),
            TokenError::Internal(e) => ForwardError::Internal(e),
        }
    }
}

pub struct Forwarder {
    store: DynStore,
    tokens: Arc<Tokens>,
    destinations: DestinationCache,
    audit: audit::AuditWriter,
    client: ForwardClient,
    max_body_bytes: usize,
}

impl Forwarder {
    /// `allow_list_ttl` is how long a node trusts an account's allow-list (the auth cache window).
    pub fn new(
        store: DynStore,
        tokens: Arc<Tokens>,
        timeout: Duration,
        allow_list_ttl: Duration,
        max_body_bytes: usize,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            tokens,
            destinations: DestinationCache::new(allow_list_ttl),
            audit: audit::AuditWriter::spawn(store.clone()),
            client: ForwardClient::new(timeout)?,
            max_body_bytes,
            store,
        })
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Checks, fills, sends and relays. The checks run in an order that reveals nothing to whom it
    /// should not: the body's own faults (422), then the token (404), then the allow-list (403), then
    /// what the token lacks (422, 409). Only then is the card opened. Once the token is known to be the
    /// account's, whatever happens is audited and logged.
    pub async fn forward(&self, req: ForwardRequest<'_>) -> Result<Answer, ForwardError> {
        let syntax = Syntax::of_content_type(
            req.headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let template = Template::parse(req.body, syntax).map_err(ForwardError::InvalidBody)?;
        let token = self
            .tokens
            .get(req.account_id, req.token_id)
            .await?
            .ok_or(ForwardError::UnknownToken)?;
        let result = self.forward_token(&req, &template, &token).await;
        let outcome = match &result {
            Ok(answer) => format!("status {}", answer.status.as_u16()),
            Err(ForwardError::NotAllowed) => "refused: not allow-listed".into(),
            Err(ForwardError::InvalidBody(_)) => "refused: invalid body".into(),
            Err(ForwardError::SecurityCodeGone) => "refused: security code not cached".into(),
            Err(ForwardError::CodeCache(_)) => "failure: security code cache unavailable".into(),
            Err(ForwardError::Send(SendError::Refused(_))) => "refused: address guard".into(),
            Err(ForwardError::Send(SendError::TimedOut)) => "failure: timed out".into(),
            Err(ForwardError::Send(_)) => "failure: bad gateway".into(),
            Err(_) => "failure: internal".into(),
        };
        let host = req.destination.host_str().unwrap_or("");
        let path = req.destination.path();
        tracing::info!(token = %token.id, destination_host = host, destination_path = path, %outcome, "forward");
        self.audit(&req, &format!("{} {host}{path}", token.id), &outcome)
            .await;
        result
    }

    async fn forward_token(
        &self,
        req: &ForwardRequest<'_>,
        template: &Template,
        token: &TokenRecord,
    ) -> Result<Answer, ForwardError> {
        if !self
            .destinations
            .allows(&self.store, req.account_id, &req.destination)
            .await?
        {
            return Err(ForwardError::NotAllowed);
        }
        if template.needs(Field::CardholderName) && token.cardholder_name.is_none() {
            return Err(ForwardError::InvalidBody(
                "`{{ cardholder_name }}`: the token has no cardholder name".into(),
            ));
        }
        // Refused before the card is opened or the code taken (the client checks again when sending).
        if let Some(why) = literal_ip(&req.destination).and_then(refusal) {
            return Err(SendError::Refused(why).into());
        }
        let card = self
            .tokens
            .vault
            .open(req.account_id, token.id, &token.sealed_card)
            .await?;
        crate::metrics::metrics().card_read("forward");
        // Taken out of the cache only once everything else is known to be fine: used once, then gone.
        let code = match template.needs(Field::SecurityCode) {
            false => None,
            true => Some(
                self.tokens
                    .cvc
                    .take(req.account_id, token.id)
                    .await?
                    .ok_or(ForwardError::SecurityCodeGone)?,
            ),
        };
        let values = Values {
            account_number: card.pan.peek(),
            cardholder_name: card.cardholder_name.as_deref(),
            expiration_month: card.expiry_month,
            expiration_year: card.expiry_year,
            security_code: code.as_ref().map(|c| c.peek()),
        };
        let Some(filled) = template.fill(req.body, &values, self.max_body_bytes) else {
            // Not sent, so not used: the code goes back for the client's next attempt.
            // If the cache is down the code is lost (logged there), as the request fails anyway.
            if let Some(code) = code {
                let _ = self.tokens.cvc.put(req.account_id, token.id, code).await;
            }
            return Err(ForwardError::InvalidBody(too_large(self.max_body_bytes)));
        };
        drop(code);
        let mut answer = self
            .client
            .post(req.destination.clone(), req.headers.clone(), filled)
            .await?;
        mask_answer(&mut answer, card.pan.peek(), &card.pan.masked());
        Ok(answer)
    }

    /// The audit row of a forward: the token whose card was opened, where it went, what came back and
    /// which key asked. A failure to write it is logged, not returned: the destination has answered,
    /// and a client told "error" would send the payment again.
    async fn audit(&self, req: &ForwardRequest<'_>, target: &str, outcome: &str) {
        let event = AuditEvent::new(
            Some(req.account_id),
            req.actor,
            Action::TokenForward,
            Some(target.to_owned()),
            outcome,
        );
        if let Err(err) = self.audit.write(event).await {
            tracing::error!(error = %err, "the audit row of a forward could not be written");
        }
    }
}

pub fn too_large(limit: usize) -> String {
    format!("the body is larger than the limit of {limit} bytes")
}

/// Replaces the card's full number in the answer's body and header values by its mask.
fn mask_answer(answer: &mut Answer, pan: &str, masked: &str) {
    if let Some(body) = mask::mask_pan(&answer.body, pan, masked) {
        // The answer as it came held the number: wiped, not just dropped.
        drop(Zeroizing::new(std::mem::replace(
            &mut answer.body,
            body.to_vec(),
        )));
    }
    let mut unmaskable = Vec::new();
    for (name, value) in answer.headers.iter_mut() {
        if let Some(clean) = mask::mask_pan(value.as_bytes(), pan, masked) {
            match HeaderValue::from_bytes(&clean) {
                Ok(clean) => *value = clean,
                Err(_) => unmaskable.push(name.clone()),
            }
        }
    }
    for name in unmaskable {
        answer.headers.remove(name);
    }
}
