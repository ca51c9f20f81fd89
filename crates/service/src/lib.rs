//! # anomalyd-service
//!
//! The HTTP API of anomalyd (axum): routes under `/api/v1`, health probes, and one error
//! mapping to RFC 9457 problem+json ([`error::ApiError`]). The OpenAPI 3.1 document is
//! generated from the handlers ([`openapi::ApiDoc`]) and served at `/api/v1/openapi.json`,
//! with interactive docs at `/docs`, and the web dashboard ([`ui`]) at `/`.

mod anomalies;
pub mod auth;
mod dashboard;
mod devices;
pub mod error;
mod health;
mod incidents;
pub mod ingest;
mod insights;
pub mod middleware;
pub mod models;
pub mod openapi;
pub mod pipeline;
mod score;
pub mod system;
pub mod telemetry_metrics;
pub mod troubleshoot;
pub mod ui;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anomalyd_engine::fleet::{FleetBundle, FleetConfig};
use anomalyd_store::Store;
use axum::Router;
use axum::routing::{MethodFilter, on};
use tower_http::timeout::TimeoutLayer;

use crate::pipeline::{ActiveBundle, Pipeline, PipelineSettings};

/// The fleet configuration used when none is given: the one documented in
/// `config/fleet.toml`.
pub const DEFAULT_FLEET_CONFIG: &str = include_str!("../../../config/fleet.toml");

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Ingest queue, batching and dedup.
    pub pipeline: PipelineSettings,
    /// Features, rules and model settings used when training from stored telemetry.
    pub fleet_config: FleetConfig,
    /// API keys.
    pub auth: auth::AuthSettings,
    /// Limits, rate limits, CORS.
    pub http: middleware::HttpSettings,
    /// LLM endpoint, answer cache and rules table of troubleshooting.
    pub troubleshoot: troubleshoot::TroubleshootSettings,
    /// Webhook delivery.
    pub webhooks: webhooks::WebhookSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            pipeline: PipelineSettings::default(),
            fleet_config: FleetConfig::from_toml(DEFAULT_FLEET_CONFIG)
                .expect("the shipped configuration is valid"),
            auth: auth::AuthSettings::default(),
            http: middleware::HttpSettings::default(),
            troubleshoot: troubleshoot::TroubleshootSettings::default(),
            webhooks: webhooks::WebhookSettings::default(),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Ingest queue, worker and the active bundle.
    pub pipeline: Arc<Pipeline>,
    /// Background model training.
    pub training: Arc<models::Training>,
    /// Settings.
    pub settings: Arc<ServiceSettings>,
    /// CPU, memory and ingest rate, measured in the background.
    pub system: Arc<system::SystemMonitor>,
    /// Recent API key lookups.
    pub keys: Arc<auth::KeyCache>,
    /// Troubleshooting answers: LLM client and single-flight.
    pub troubleshoot: Arc<troubleshoot::Troubleshooter>,
    /// Webhook delivery worker; call [`webhooks::WebhookWorker::shutdown`] on graceful
    /// shutdown so attempts in flight finish or go back to the outbox.
    pub webhooks: Arc<webhooks::WebhookWorker>,
}

impl AppState {
    /// State over `store` with default settings but no authentication (tests and in-process
    /// embedding), scoring with `bundle` when given (labelled version `file`). Starts the
    /// ingest worker, so it must run inside a tokio runtime.
    pub fn new(store: Store, bundle: Option<FleetBundle>) -> Self {
        let bundle = bundle.map(|bundle| ActiveBundle { bundle, version: "file".into(), model_id: None });
        let settings = ServiceSettings { auth: auth::AuthSettings::disabled(), ..ServiceSettings::default() };
        Self::with_settings(store, bundle, settings)
    }

    /// State with explicit settings and bundle. Starts the ingest pipeline and the webhook
    /// worker.
    pub fn with_settings(store: Store, bundle: Option<ActiveBundle>, settings: ServiceSettings) -> Self {
        telemetry_metrics::init();
        let webhooks = Arc::new(webhooks::WebhookWorker::start(store.clone(), settings.webhooks.clone()));
        let pipeline =
            Arc::new(Pipeline::start(store.clone(), bundle, settings.pipeline.clone(), webhooks.waker()));
        let system = Arc::new(system::SystemMonitor::default());
        system.start(Arc::downgrade(&pipeline), Duration::from_secs(5));
        // The LLM gets four fifths of the request timeout, so the fallback answer still goes
        // out before the timeout layer cuts the request off.
        let budget = settings.http.request_timeout.saturating_sub(settings.http.request_timeout / 5);
        let troubleshoot = Arc::new(troubleshoot::Troubleshooter::new(settings.troubleshoot.clone(), budget));
        Self {
            store,
            pipeline,
            training: Arc::new(models::Training::default()),
            settings: Arc::new(settings),
            system,
            keys: Arc::new(auth::KeyCache::default()),
            troubleshoot,
            webhooks,
        }
    }

    /// State scoring with the model the registry marks active (if any).
    pub async fn from_registry(
        store: Store,
        settings: ServiceSettings,
    ) -> Result<Self, anomalyd_store::StoreError> {
        let bundle = models::load_active(&store).await?;
        Ok(Self::with_settings(store, bundle, settings))
    }
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// Declares the routes once, giving both [`ROUTES`] and the router that serves them, so a
/// route cannot be served without being listed (and the OpenAPI test then demands its docs).
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path, $scope:ident;)*) => {
        /// Every route of the API as (method, path) — all of them documented in
        /// [`openapi::ApiDoc`]. The document itself and `/docs` are served besides.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// The scope each route of [`ROUTES`] needs, in the same order.
        pub const ROUTE_SCOPES: &[auth::Scope] = &[$(auth::Scope::$scope),*];

        fn api_routes(state: &AppState) -> Router<AppState> {
            // Routes on one path merge into one method router; each method carries its own
            // scope check.
            Router::new()$(.route(
                $path,
                on(MethodFilter::$method, $handler).route_layer(axum::middleware::from_fn_with_state(
                    (state.clone(), auth::Scope::$scope),
                    auth::require,
                )),
            ))*
        }
    };
}

api_routes! {
    GET "/healthz" => health::healthz, Public;
    GET "/readyz" => health::readyz, Public;
    POST "/api/v1/telemetry" => ingest::ingest, Write;
    GET "/api/v1/anomalies" => anomalies::list, Read;
    GET "/api/v1/devices" => devices::list, Read;
    GET "/api/v1/devices/{id}" => devices::detail, Read;
    GET "/api/v1/anomalies/{id}" => anomalies::detail, Read;
    PATCH "/api/v1/anomalies/{id}" => anomalies::update, Write;
    POST "/api/v1/anomalies/{id}/troubleshoot" => troubleshoot::troubleshoot, Read;
    GET "/api/v1/incidents" => incidents::list, Read;
    GET "/api/v1/incidents/{id}" => incidents::detail, Read;
    PATCH "/api/v1/incidents/{id}" => incidents::update, Write;
    POST "/api/v1/score" => score::score, Write;
    GET "/api/v1/dashboard/stats" => dashboard::stats, Read;
    GET "/api/v1/dashboard/trends" => dashboard::trends, Read;
    GET "/api/v1/insights/correlations" => insights::correlations, Read;
    GET "/api/v1/models" => models::list, Read;
    POST "/api/v1/models/train" => models::train, Admin;
    GET "/api/v1/models/train/{job}" => models::job, Read;
    POST "/api/v1/models/{id}/activate" => models::activate, Admin;
    GET "/api/v1/webhooks" => webhooks::list, Admin;
    POST "/api/v1/webhooks" => webhooks::create, Admin;
    DELETE "/api/v1/webhooks/{id}" => webhooks::delete, Admin;
    GET "/api/v1/webhooks/{id}/deliveries" => webhooks::deliveries, Admin;
    POST "/api/v1/webhooks/{id}/deliveries/{delivery}/retry" => webhooks::retry, Admin;
    GET "/metrics" => telemetry_metrics::render, Read;
}

/// All routes with their middleware.
pub fn router(state: AppState) -> Router {
    let http = state.settings.http.clone();
    let routes = api_routes(&state)
        .merge(openapi::docs_router())
        // The dashboard: public static files; their data comes from the API with a key.
        .merge(ui::router())
        // Enforced by the body extractors, whose rejection the handlers turn into problem+json.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(middleware::TIMEOUT_STATUS, http.request_timeout))
        .with_state(state);
    middleware::apply(routes, &http)
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every in-flight request was answered and everything queued is committed.
    Clean,
    /// The grace period ran out first; unanswered requests were never acknowledged, so
    /// their samples may be re-sent safely.
    GraceExpired,
}

/// Serves until `shutdown` completes, then shuts down in order within
/// `settings.http.shutdown_grace`: stop accepting connections, let in-flight requests
/// finish (an ingest request is answered only after its samples are committed), drain the
/// ingest pipeline (score what re-order buffers hold and commit it), then stop the webhook
/// worker (attempts in flight finish or return to the outbox). The caller closes the store
/// afterwards.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Shutdown> {
    let grace = state.settings.http.shutdown_grace;
    let pipeline = state.pipeline.clone();
    let webhooks = state.webhooks.clone();
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutdown requested: no new connections; finishing in-flight requests");
        let _ = signalled.send(tokio::time::Instant::now());
    });
    let (deadline_tx, deadline_rx) = tokio::sync::oneshot::channel();
    let watchdog = async move {
        match on_signal.await {
            Ok(at) => {
                let deadline = at + grace;
                let _ = deadline_tx.send(deadline);
                tokio::time::sleep_until(deadline).await;
            }
            // The server ended without a signal (an IO error): nothing to wait for.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served?,
        () = watchdog => return Ok(Shutdown::GraceExpired),
    }
    let deadline = match deadline_rx.await {
        Ok(d) => d,
        Err(_) => tokio::time::Instant::now() + grace,
    };
    let drained = tokio::time::timeout_at(deadline, pipeline.drain()).await.is_ok();
    // Webhook attempts in flight get what is left of the grace (at least a moment); the
    // rest go back to the outbox uncounted and are sent after the restart.
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    webhooks.shutdown(left.max(std::time::Duration::from_millis(100))).await;
    Ok(if drained { Shutdown::Clean } else { Shutdown::GraceExpired })
}

/// Unix milliseconds now (the time stamped on stored rows).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
