//! Prometheus metrics: the `strongroom_*` families, kept in atomics in one process-wide registry, and the
//! text that the metrics listener serves. Labels are drawn from small fixed sets (route templates,
//! methods, statuses, job kinds, outcomes): never an id, a key or card data.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// An HTTP status code as a label value, written without allocating.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Status(pub u16);

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        write!(encoder, "{}", self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: Status,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabel {
    pub origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PurposeLabel {
    pub purpose: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOutcomeLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub backend: &'static str,
}

type SecondsGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn lag_histogram() -> Histogram {
    // 10 ms .. ~5.8 h: a delivery waiting out its retries lags for hours.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

/// Every family this build exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub tokens_created: Family<OriginLabel, Counter>,
    pub card_reads: Family<PurposeLabel, Counter>,
    pub jobs_queued: Family<KindLabel, Gauge>,
    pub job_oldest_due: Family<KindLabel, SecondsGauge>,
    pub jobs_finished: Family<KindOutcomeLabels, Counter>,
    pub import_cards: Family<OutcomeLabel, Counter>,
    pub imports_running: Gauge,
    pub webhook_deliveries: Family<OutcomeLabel, Counter>,
    pub webhook_lag: Histogram,
    pub db_pool: Family<StateLabel, Gauge>,
    pub db_query_duration: Family<OpLabel, Histogram, fn() -> Histogram>,
    pub build_info: Family<BuildLabels, Gauge>,
    /// Route templates seen, each leaked once so that labels are `&'static str` (the set is the router's).
    routes: RwLock<HashMap<String, &'static str>>,
    job_kinds: RwLock<Vec<&'static str>>,
}

/// Outcomes of a finished job run, as `strongroom_jobs_finished_total{outcome}` spells them.
pub const JOB_OUTCOMES: [&str; 4] = ["completed", "rescheduled", "failed", "lease_lost"];
/// Why card data was decrypted: to pay with it, or to forward it.
pub const CARD_READ_PURPOSES: [&str; 2] = ["payment", "forward"];
/// Outcomes of a card an import tried.
pub const IMPORT_CARD_OUTCOMES: [&str; 2] = ["success", "failure"];
/// Outcomes of a webhook delivery attempt.
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "retried", "failed"];

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "strongroom_http_requests",
            "HTTP requests answered, by matched route template, method and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "strongroom_http_request_duration_seconds",
            "Time to answer an HTTP request, by matched route template and method",
            http_duration.clone(),
        );
        let tokens_created = Family::<OriginLabel, Counter>::default();
        registry.register(
            "strongroom_tokens_created",
            "Tokens created, by origin (api or import)",
            tokens_created.clone(),
        );
        let card_reads = Family::<PurposeLabel, Counter>::default();
        registry.register(
            "strongroom_card_reads",
            "Card data decrypted, by purpose",
            card_reads.clone(),
        );
        let jobs_queued = Family::<KindLabel, Gauge>::default();
        registry.register(
            "strongroom_jobs_queued",
            "Jobs waiting in the durable queue, by kind (sampled at scrape time)",
            jobs_queued.clone(),
        );
        let job_oldest_due = Family::<KindLabel, SecondsGauge>::default();
        registry.register(
            "strongroom_job_oldest_due_seconds",
            "How long the oldest due queued job of a kind has been waiting past its run time",
            job_oldest_due.clone(),
        );
        let jobs_finished = Family::<KindOutcomeLabels, Counter>::default();
        registry.register(
            "strongroom_jobs_finished",
            "Job runs ended on this node, by kind and outcome",
            jobs_finished.clone(),
        );
        let import_cards = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "strongroom_import_cards",
            "Cards tried by Stripe imports on this node, by outcome",
            import_cards.clone(),
        );
        let imports_running = Gauge::default();
        registry.register(
            "strongroom_imports_running",
            "Imports preparing or running (sampled at scrape time)",
            imports_running.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "strongroom_webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            webhook_deliveries.clone(),
        );
        let webhook_lag = lag_histogram();
        registry.register(
            "strongroom_webhook_delivery_lag_seconds",
            "Time from an event to its successful delivery",
            webhook_lag.clone(),
        );
        let db_pool = Family::<StateLabel, Gauge>::default();
        registry.register(
            "strongroom_db_pool_connections",
            "Database pool connections, by state (idle or in_use; sampled at scrape time)",
            db_pool.clone(),
        );
        let db_query_duration =
            Family::<OpLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "strongroom_db_query_duration_seconds",
            "Time of the hot database operations, by operation",
            db_query_duration.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "strongroom_build_info",
            "Always 1: the version of this binary and the storage backend it runs on",
            build_info.clone(),
        );
        for origin in ["api", "import"] {
            let _ = tokens_created.get_or_create(&OriginLabel { origin });
        }
        for outcome in IMPORT_CARD_OUTCOMES {
            let _ = import_cards.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in WEBHOOK_OUTCOMES {
            let _ = webhook_deliveries.get_or_create(&OutcomeLabel { outcome });
        }
        for purpose in CARD_READ_PURPOSES {
            let _ = card_reads.get_or_create(&PurposeLabel { purpose });
        }
        for state in ["idle", "in_use"] {
            let _ = db_pool.get_or_create(&StateLabel { state });
        }
        Self {
            registry,
            http_requests,
            http_duration,
            tokens_created,
            card_reads,
            jobs_queued,
            job_oldest_due,
            jobs_finished,
            import_cards,
            imports_running,
            webhook_deliveries,
            webhook_lag,
            db_pool,
            db_query_duration,
            build_info,
            routes: RwLock::new(HashMap::new()),
            job_kinds: RwLock::new(Vec::new()),
        }
    }

    /// The `&'static` label for a matched route template (allocates once per template).
    pub fn route(&self, template: &str) -> &'static str {
        if let Some(found) = self
            .routes
            .read()
            .ok()
            .and_then(|m| m.get(template).copied())
        {
            return found;
        }
        let Ok(mut routes) = self.routes.write() else {
            return "unknown";
        };
        // A router has a few dozen templates; a cap keeps a bug from growing this without end.
        if routes.len() >= 256 {
            return "other";
        }
        routes
            .entry(template.to_owned())
            .or_insert_with(|| Box::leak(template.to_owned().into_boxed_str()))
    }

    pub fn observe_request(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        took: Duration,
    ) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route,
                method,
                status: Status(status),
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { route, method })
            .observe(took.as_secs_f64());
    }

    pub fn token_created(&self, origin: &'static str, n: u64) {
        self.tokens_created
            .get_or_create(&OriginLabel { origin })
            .inc_by(n);
    }

    pub fn card_read(&self, purpose: &'static str) {
        self.card_reads
            .get_or_create(&PurposeLabel { purpose })
            .inc();
    }

    pub fn job_finished(&self, kind: &'static str, outcome: &'static str) {
        self.jobs_finished
            .get_or_create(&KindOutcomeLabels { kind, outcome })
            .inc();
    }

    pub fn import_card(&self, success: bool) {
        let outcome = IMPORT_CARD_OUTCOMES[usize::from(!success)];
        self.import_cards
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn db_query(&self, op: &'static str, took: Duration) {
        self.db_query_duration
            .get_or_create(&OpLabel { op })
            .observe(took.as_secs_f64());
    }

    /// Declares the job kinds this node runs, so that their gauges and counters exist at zero.
    pub fn declare_job_kinds(&self, kinds: &[&'static str]) {
        if let Ok(mut declared) = self.job_kinds.write() {
            for kind in kinds {
                if !declared.contains(kind) {
                    declared.push(kind);
                }
            }
        }
        for &kind in kinds {
            let _ = self.jobs_queued.get_or_create(&KindLabel { kind });
            let _ = self.job_oldest_due.get_or_create(&KindLabel { kind });
            for outcome in JOB_OUTCOMES {
                let _ = self
                    .jobs_finished
                    .get_or_create(&KindOutcomeLabels { kind, outcome });
            }
        }
    }

    pub fn set_build_info(&self, backend: &'static str) {
        self.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                backend,
            })
            .set(1);
    }

    /// The exposition text (Prometheus text format 0.0.4 compatible).
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// The process's metrics. One registry per process: a server process is one node.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Times `fut` into `strongroom_db_query_duration_seconds{op}`.
pub async fn timed<T>(op: &'static str, fut: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = fut.await;
    metrics().db_query(op, started.elapsed());
    out
}

/// The job kinds declared by the servers of this process.
pub fn declared_job_kinds() -> Vec<&'static str> {
    metrics()
        .job_kinds
        .read()
        .map(|kinds| kinds.clone())
        .unwrap_or_default()
}
