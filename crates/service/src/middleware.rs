//! The HTTP middleware stack, outermost first: request id (set, logged, returned), tracing,
//! security headers, CORS, compression, load shedding above a concurrency limit (503 +
//! `Retry-After`), request metrics, per-key rate limiting (429 + `Retry-After`), timeout and
//! body limit. Each is the tower / tower-http / tower_governor layer for the job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

/// HTTP limits and policies.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Requests served at once; beyond it new requests get 503 at once (load shedding).
    pub max_in_flight: usize,
    /// Sustained requests per second per API key (0: no limit). Requests without a key
    /// share one budget.
    pub rate_per_sec: u32,
    /// Requests a key may send in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Origins allowed by CORS (`*` for any; empty: no cross-origin access).
    pub cors_origins: Vec<String>,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// On SIGINT/SIGTERM: how long in-flight requests and the ingest queue may take to
    /// finish before the process gives up waiting.
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            rate_per_sec: 2_000,
            rate_burst: 4_000,
            cors_origins: Vec::new(),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// `x-request-id` values: a per-process random prefix and a counter (unique, cheap, and
/// sortable within one process).
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:08x}", self.prefix)).ok().map(RequestId::new)
    }
}

/// Rate-limit key: the bearer token (each key its own budget), or one shared budget for
/// requests without one.
#[derive(Debug, Clone, Copy)]
struct BearerKey;

impl KeyExtractor for BearerKey {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, tower_governor::GovernorError> {
        Ok(crate::auth::bearer_token(req.headers())
            .map_or_else(|| "anonymous".to_string(), anomalyd_store::hash_key))
    }
}

#[allow(clippy::needless_pass_by_value)] // the signature tower_governor asks for
fn rate_limited(error: tower_governor::GovernorError) -> Response<axum::body::Body> {
    let wait = match &error {
        tower_governor::GovernorError::TooManyRequests { wait_time, .. } => (*wait_time).max(1),
        _ => 1,
    };
    let mut res = ApiError::too_many(format!("rate limit exceeded for this API key; retry in {wait} s"))
        .into_response();
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
    res
}

async fn shed(_: tower::BoxError) -> Response<axum::body::Body> {
    ApiError::unavailable("the server is at its limit of requests in flight; retry shortly").into_response()
}

/// Wraps the routes in the stack.
pub fn apply(routes: Router, http: &HttpSettings) -> Router {
    let mut router = routes;
    if http.rate_per_sec > 0 {
        let period =
            Duration::from_nanos(1_000_000_000 / u64::from(http.rate_per_sec)).max(Duration::from_nanos(1));
        let config = GovernorConfigBuilder::default()
            .period(period)
            .burst_size(http.rate_burst.max(1))
            .key_extractor(BearerKey)
            .finish()
            .expect("period and burst are positive");
        // Every distinct bearer token gets a bucket, valid or not (the limit runs before the key
        // check, so a flood of made-up keys is throttled too); buckets that have refilled are
        // dropped every minute so memory stays bounded.
        let config = Arc::new(config);
        let limiter = Arc::downgrade(config.limiter());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else { break };
                limiter.retain_recent();
            }
        });
        router = router.layer(GovernorLayer::new(config).error_handler(rate_limited));
    }
    let router = router.layer(axum::middleware::from_fn(crate::telemetry_metrics::track)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(shed))
            .load_shed()
            // axum clones layers per route; a global layer shares one semaphore among them.
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(http.max_in_flight.max(1))),
    );
    let cors = if http.cors_origins.iter().any(|o| o == "*") {
        CorsLayer::new().allow_origin(AllowOrigin::any())
    } else {
        let origins: Vec<HeaderValue> = http.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        CorsLayer::new().allow_origin(origins)
    }
    .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
    .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
    .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")]);
    let ids = RequestIds {
        prefix: format!("{:08x}", rand::random::<u32>()).into(),
        next: Arc::new(AtomicU64::new(1)),
    };
    router
        .layer(CompressionLayer::new())
        .layer(cors)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<axum::body::Body>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(ids))
}

/// 408 when a request outlives the timeout.
pub const TIMEOUT_STATUS: StatusCode = StatusCode::REQUEST_TIMEOUT;
