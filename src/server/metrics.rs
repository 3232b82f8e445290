//! The metrics listener: `GET /metrics` on its own address, never the API's. Gauges that describe the
//! database (queue depth, running imports, pool) are sampled when Prometheus scrapes.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{metrics, KindLabel};
use crate::store::{DynStore, Ts};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves the metrics until `stop`; answers the bound address.
pub async fn spawn(
    addr: SocketAddr,
    store: DynStore,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(store);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::warn!(error = %err, "the metrics listener failed");
        }
    });
    Ok((bound, task))
}

async fn scrape(State(store): State<DynStore>) -> Response {
    sample(&store).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics().render(),
    )
        .into_response()
}

/// Refreshes the sampled gauges. A database that does not answer leaves them as they were (the HTTP
/// and job counters still tell the story; `/ready` names the outage).
async fn sample(store: &DynStore) {
    let m = metrics();
    let (idle, in_use) = store.pool_connections();
    m.db_pool
        .get_or_create(&crate::metrics::StateLabel { state: "idle" })
        .set(i64::from(idle));
    m.db_pool
        .get_or_create(&crate::metrics::StateLabel { state: "in_use" })
        .set(i64::from(in_use));
    if let Ok(n) = crate::metrics::timed("count_active_imports", store.count_active_imports()).await
    {
        m.imports_running.set(n);
    }
    if let Ok(stats) = crate::metrics::timed("job_queue_stats", store.job_queue_stats()).await {
        let now = Ts::now().micros();
        // Kinds not in the answer have nothing queued.
        for kind in crate::metrics::declared_job_kinds() {
            let found = stats.iter().find(|(k, _, _)| k == kind);
            let (n, due) = found.map_or((0, None), |(_, n, due)| (*n, *due));
            let label = KindLabel { kind };
            m.jobs_queued.get_or_create(&label).set(n);
            let waiting = due.map_or(0.0, |due| (now - due.micros()).max(0) as f64 / 1e6);
            m.job_oldest_due.get_or_create(&label).set(waiting);
        }
    }
}
