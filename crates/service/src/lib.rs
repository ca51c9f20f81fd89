//! # anomalyd-service
//!
//! The HTTP API of anomalyd (axum): routes under `/api/v1`, health probes, and one error
//! mapping to RFC 9457 problem+json ([`error::ApiError`]).

mod anomalies;
mod devices;
pub mod error;
mod health;
pub mod ingest;

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use anomalyd_store::Store;
use axum::Router;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Per-device streaming state and the active bundle.
    pub pipeline: Arc<ingest::Pipeline>,
}

impl AppState {
    /// State over `store`, scoring with `bundle` when given.
    pub fn new(store: Store, bundle: Option<anomalyd_engine::fleet::FleetBundle>) -> Self {
        Self { store, pipeline: Arc::new(ingest::Pipeline::new(bundle)) }
    }
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// All routes with their middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/telemetry", post(ingest::ingest))
        .route("/api/v1/anomalies", get(anomalies::list))
        .route("/api/v1/devices", get(devices::list))
        .route("/api/v1/devices/{id}", get(devices::detail))
        .route("/api/v1/anomalies/{id}", get(anomalies::detail).patch(anomalies::update))
        // Enforced by the body extractors, whose rejection the handlers turn into problem+json.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
