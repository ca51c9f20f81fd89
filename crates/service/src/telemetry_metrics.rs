//! `/metrics` in Prometheus text format, and the middleware that times every request.
//!
//! Latency is recorded per matched route (the pattern, not the raw path, so ids do not
//! explode the label set), method and status. Gauges that describe state (queue depth,
//! pool, process memory) are set from their sources when `/metrics` is scraped, so they are
//! exact at scrape time and cost nothing in between.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process-wide recorder (metrics macros write to one global recorder).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
            .expect("bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed by an embedding program; then this
        // handle renders only what is set on it directly, which is still valid output.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Installs the recorder; call once at start so the first request is already counted.
pub fn init() {
    let _ = handle();
}

/// Label of a batch size for the inference histogram.
pub fn batch_bucket(n: usize) -> &'static str {
    match n {
        0..=1 => "1",
        2..=10 => "2-10",
        11..=100 => "11-100",
        101..=1000 => "101-1000",
        1001..=10_000 => "1001-10000",
        _ => ">10000",
    }
}

/// Records one inference call.
pub fn record_inference(engine: &'static str, rows: usize, took: Duration) {
    metrics::histogram!("anomalyd_inference_duration_seconds", "engine" => engine, "batch" => batch_bucket(rows))
        .record(took.as_secs_f64());
}

/// Middleware: request latency by route, method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("anomalyd_http_request_duration_seconds",
        "route" => route, "method" => method, "status" => status)
    .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    summary = "Prometheus metrics",
    description = "Request latency by route, method and status; ingest, queue, database pool, process \
        and inference metrics; webhook deliveries by outcome and the outbox backlog, in the \
        Prometheus text exposition format 0.0.4.",
    responses(
        (status = 200, description = "The metrics.", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
    )
)]
pub async fn render(State(state): State<AppState>) -> Response {
    let c = state.pipeline.counters();
    metrics::counter!("anomalyd_ingest_samples_stored_total")
        .absolute(c.samples_stored.load(Ordering::Relaxed));
    metrics::counter!("anomalyd_ingest_samples_duplicate_total")
        .absolute(c.samples_duplicate.load(Ordering::Relaxed));
    metrics::counter!("anomalyd_ingest_rejected_queue_full_total")
        .absolute(c.rejected_full.load(Ordering::Relaxed));
    metrics::counter!("anomalyd_ingest_batches_total").absolute(c.batches.load(Ordering::Relaxed));
    metrics::counter!("anomalyd_anomalies_stored_total").absolute(c.anomalies.load(Ordering::Relaxed));
    metrics::gauge!("anomalyd_ingest_queue_depth").set(state.pipeline.queued() as f64);
    metrics::gauge!("anomalyd_ingest_queue_capacity").set(state.pipeline.capacity() as f64);
    let (size, idle) = state.store.pool_usage();
    metrics::gauge!("anomalyd_db_pool_connections").set(f64::from(size));
    metrics::gauge!("anomalyd_db_pool_idle_connections").set(idle as f64);
    let sys = state.system.latest();
    metrics::gauge!("anomalyd_process_resident_memory_bytes").set(sys.process_rss_bytes as f64);
    metrics::gauge!("anomalyd_process_cpu_percent").set(sys.process_cpu_pct);
    metrics::gauge!("anomalyd_ingest_samples_per_second").set(sys.ingest_samples_per_sec);
    // Webhook attempts are counted as they end (`anomalyd_webhook_deliveries_total` by
    // outcome); the backlog is read from the outbox's index.
    if let Ok(n) = state.store.unfinished_deliveries().await {
        metrics::gauge!("anomalyd_webhook_deliveries_unfinished").set(n as f64);
    }
    metrics::gauge!("anomalyd_model_active").set(if state.pipeline.bundle().is_some() { 1.0 } else { 0.0 });
    let mut res = handle().render().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}
