//! Liveness and readiness probes; neither waits on a measurement.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// Answer of the liveness probe.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    #[schema(schema_with = ok)]
    status: &'static str,
}

fn ok() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::string_enum(&["ok"])
}

/// Answer of the readiness probe.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    #[schema(schema_with = ready)]
    status: &'static str,
    /// Always `ok`.
    #[schema(schema_with = ok)]
    database: &'static str,
    /// Version of the model scoring telemetry; null when none is active (telemetry is then
    /// stored but not scored, which does not make the service unready).
    model: Option<String>,
}

fn ready() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::string_enum(&["ready"])
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    summary = "Liveness",
    description = "The process answers; waits on nothing.",
    responses((status = 200, description = "Alive.", body = Liveness))
)]
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// `GET /readyz`: the database answers; reports the active model.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    summary = "Readiness",
    description = "The database answers; `model` is the active model's version, or null.",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    state.store.ping().await.map_err(|e| ApiError::unavailable(format!("database: {e}")))?;
    let model = state.pipeline.bundle().map(|b| b.version.clone());
    Ok(Json(Readiness { status: "ready", database: "ok", model }))
}
