//! Webhooks from the test's side: settings that make deliveries fast, registering a webhook for the
//! default account, and reading (or waiting on) its delivery rows.

use std::time::{Duration, Instant};

use strongroom::config::Config;
use strongroom::domain::webhooks::{self, EventSet};
use strongroom::store::WebhookDelivery;
use uuid::Uuid;

use super::app::TestApp;

/// Background workers that poll often, and retries 100 ms apart at first, so that tests take seconds.
pub fn fast_webhooks(config: &mut Config) {
    config.workers = 2;
    config.job_poll_interval = Duration::from_millis(20);
    config.webhooks.retry_base = Duration::from_millis(100);
    config.webhooks.timeout = Duration::from_secs(2);
}

impl TestApp {
    /// Registers a webhook for the default account; returns its id and signing key.
    pub async fn add_webhook(&self, url: &str, events: &str) -> (Uuid, String) {
        let account = self.account_id().await;
        let vault = &self.server().state().tokens.vault;
        let events = EventSet::parse_list(events).unwrap();
        let (webhook, key) =
            webhooks::add_webhook(self.store(), vault, account, url, events, "test")
                .await
                .unwrap();
        (webhook.id, key.expose().to_owned())
    }

    /// The webhook's delivery rows, newest first.
    pub async fn webhook_deliveries(&self, webhook: Uuid) -> Vec<WebhookDelivery> {
        self.store()
            .list_webhook_deliveries(webhook, 100)
            .await
            .unwrap()
    }

    /// Waits (up to 20 s) until `check` holds for the webhook's deliveries.
    pub async fn wait_deliveries(
        &self,
        webhook: Uuid,
        check: impl Fn(&[WebhookDelivery]) -> bool,
    ) -> Vec<WebhookDelivery> {
        let started = Instant::now();
        loop {
            let rows = self.webhook_deliveries(webhook).await;
            if check(&rows) {
                return rows;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{rows:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
