//! `/api/v1/models`: train from stored telemetry in the background, list, activate.
//!
//! Training reads the stored samples in (device, time) order, computes features with the
//! server's fleet configuration, trains the bundle on the blocking pool and stores it in the
//! registry; a job's phase and progress are visible while it runs. Activation writes the
//! registry first, then swaps the bundle the pipeline scores with: requests already scoring
//! finish with the bundle they hold, later ones get the new one, none fails.

use std::sync::Mutex;
use std::time::Instant;

use anomalyd_engine::fleet::json::{Interner, sample_from_json};
use anomalyd_engine::fleet::{FleetBundle, FleetConfig, Timestamp, extract_all};
use anomalyd_store::{ModelRecord, NewModel, Store, StoreError};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::pipeline::ActiveBundle;
use crate::{AppState, now_ms};

/// A training job as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrainJob {
    /// Job id.
    pub id: u64,
    /// queued, loading, features, training, saving, done, failed.
    #[schema(value_type = crate::openapi::TrainPhase)]
    pub phase: &'static str,
    /// Fraction done in [0, 1].
    pub progress: f64,
    /// Samples read so far.
    pub samples: u64,
    /// Feature rows trained on.
    pub rows: u64,
    /// Model id once stored.
    pub model_id: Option<i64>,
    /// Version label.
    pub version: String,
    /// Whether it is activated when done.
    pub activate: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Started, RFC 3339.
    pub started_at: String,
    /// Seconds spent so far (or in all, once finished).
    pub elapsed_secs: f64,
}

/// Registry of training jobs (one runs at a time; the last 20 are kept).
#[derive(Debug, Default)]
pub struct Training {
    jobs: Mutex<Vec<(TrainJob, Instant)>>,
}

impl Training {
    fn update(&self, id: u64, f: impl FnOnce(&mut TrainJob)) {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if let Some((job, started)) = jobs.iter_mut().find(|(j, _)| j.id == id) {
            f(job);
            job.elapsed_secs = started.elapsed().as_secs_f64();
        }
    }

    /// Snapshot of the jobs, newest first.
    pub fn jobs(&self) -> Vec<TrainJob> {
        let jobs = self.jobs.lock().expect("jobs lock");
        jobs.iter()
            .rev()
            .map(|(j, started)| {
                let mut j = j.clone();
                if !matches!(j.phase, "done" | "failed") {
                    j.elapsed_secs = started.elapsed().as_secs_f64();
                }
                j
            })
            .collect()
    }

    /// One job.
    pub fn job(&self, id: u64) -> Option<TrainJob> {
        self.jobs().into_iter().find(|j| j.id == id)
    }

    fn begin(&self, version: String, activate: bool) -> Result<TrainJob, ApiError> {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if let Some((running, _)) = jobs.iter().find(|(j, _)| !matches!(j.phase, "done" | "failed")) {
            return Err(ApiError::conflict(format!("training job {} is still running", running.id)));
        }
        let id = jobs.last().map_or(1, |(j, _)| j.id + 1);
        let job = TrainJob {
            id,
            phase: "queued",
            progress: 0.0,
            samples: 0,
            rows: 0,
            model_id: None,
            version,
            activate,
            error: None,
            started_at: Timestamp(now_ms()).to_rfc3339(),
            elapsed_secs: 0.0,
        };
        jobs.push((job.clone(), Instant::now()));
        let excess = jobs.len().saturating_sub(20);
        jobs.drain(..excess);
        Ok(job)
    }
}

/// The registry's active model as the pipeline's bundle.
pub async fn load_active(store: &Store) -> Result<Option<ActiveBundle>, StoreError> {
    let Some((record, blob)) = store.active_model().await? else { return Ok(None) };
    let bundle = FleetBundle::from_bytes(&blob)
        .map_err(|e| StoreError::Invalid(format!("active model {} does not load: {e}", record.version)))?;
    Ok(Some(ActiveBundle { bundle, version: record.version, model_id: Some(record.id) }))
}

/// A stored model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    /// Id.
    id: i64,
    /// Version label.
    version: String,
    /// Whether it scores new telemetry.
    active: bool,
    /// Training parameters: trees, seed, contamination, features, time range.
    #[schema(value_type = Object)]
    params: Value,
    /// Training metrics: samples, rows, cohort models, timings.
    #[schema(value_type = Object)]
    metrics: Value,
    /// Size of the serialised bundle in bytes.
    size_bytes: i64,
    /// Stored, RFC 3339 UTC.
    created_at: String,
}

fn model_view(m: &ModelRecord) -> ModelView {
    ModelView {
        id: m.id,
        version: m.version.clone(),
        active: m.active,
        params: serde_json::from_str::<Value>(&m.params).unwrap_or(Value::Null),
        metrics: serde_json::from_str::<Value>(&m.metrics).unwrap_or(Value::Null),
        size_bytes: m.size_bytes,
        created_at: Timestamp(m.created_at).to_rfc3339(),
    }
}

/// Stored models and recent training jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// The stored models.
    items: Vec<ModelView>,
    /// The last 20 training jobs of this process, newest first.
    training: Vec<TrainJob>,
}

/// `GET /api/v1/models`: stored models and recent training jobs.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    operation_id = "list_models",
    tag = "models",
    summary = "List models and training jobs",
    responses(
        (status = 200, description = "Stored models and recent training jobs.", body = ModelList),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let models = state.store.list_models().await?;
    Ok(Json(ModelList { items: models.iter().map(model_view).collect(), training: state.training.jobs() }))
}

/// Body of `POST /api/v1/models/train`.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainBody {
    /// Train on samples from this time (RFC 3339 or Unix ms; default: all).
    #[schema(schema_with = crate::openapi::optional_time_input)]
    from: Option<Value>,
    /// … up to this time, exclusive (default: all).
    #[schema(schema_with = crate::openapi::optional_time_input)]
    to: Option<Value>,
    /// Activate the model when training succeeds (default false).
    activate: Option<bool>,
    /// Version label, 1 to 100 bytes (default: `fleet-<time>`).
    #[schema(min_length = 1, max_length = 100)]
    version: Option<String>,
}

fn time_field(v: Option<&Value>, field: &str) -> Result<Option<i64>, ApiError> {
    let bad = || ApiError::invalid(field, "must be an RFC 3339 time or Unix milliseconds");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => Timestamp::parse(s).map(|t| Some(t.0)).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// `POST /api/v1/models/train`: starts a job; answers 202 with it at once.
#[utoipa::path(
    post,
    path = "/api/v1/models/train",
    operation_id = "train_model",
    tag = "models",
    summary = "Train a model from stored telemetry",
    description = "Starts a background job and answers with it at once; follow it at \
        `/api/v1/models/train/{job}`. One job runs at a time. An empty body (no content type) means all \
        defaults.",
    request_body(content = Option<TrainBody>, content_type = "application/json"),
    responses(
        (status = 202, description = "The job, queued.", body = TrainJob),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 409, description = "A training job is still running (`/problems/conflict`).",
            body = ApiError, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
    )
)]
pub async fn train(
    State(state): State<AppState>,
    body: Result<Json<TrainBody>, JsonRejection>,
) -> Result<(StatusCode, Json<TrainJob>), ApiError> {
    let Json(body) = match body {
        Ok(b) => b,
        // An empty body means "all defaults".
        Err(JsonRejection::MissingJsonContentType(_)) => Json(TrainBody::default()),
        Err(e) => return Err(ApiError::body_rejection(e.status(), e.body_text())),
    };
    let from = time_field(body.from.as_ref(), "from")?.unwrap_or(i64::MIN);
    let to = time_field(body.to.as_ref(), "to")?.unwrap_or(i64::MAX);
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    let request = TrainRequest { from, to, activate: body.activate.unwrap_or(false), version: body.version };
    let job = start_training(&state, request)?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// What to train on and what to do with the result.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// First sample time (Unix ms), inclusive.
    pub from: i64,
    /// Last sample time (Unix ms), exclusive.
    pub to: i64,
    /// Activate when done.
    pub activate: bool,
    /// Version label (default `fleet-<UTC time>`).
    pub version: Option<String>,
}

/// Starts a training job in the background (what `POST /api/v1/models/train` does).
pub fn start_training(state: &AppState, request: TrainRequest) -> Result<TrainJob, ApiError> {
    let version = match request.version {
        Some(v) if v.is_empty() || v.len() > 100 => {
            return Err(ApiError::invalid("version", "1 to 100 characters"));
        }
        Some(v) => v,
        None => {
            let t = Timestamp(now_ms()).to_rfc3339();
            format!("fleet-{}", t.chars().filter(char::is_ascii_digit).take(14).collect::<String>())
        }
    };
    let job = state.training.begin(version, request.activate)?;
    let id = job.id;
    let state = state.clone();
    let (from, to) = (request.from, request.to);
    tokio::spawn(async move {
        if let Err(e) = run_training(&state, id, from, to).await {
            tracing::warn!(job = id, error = %e.detail, "training failed");
            state.training.update(id, |j| {
                j.phase = "failed";
                j.error = Some(e.detail.clone());
            });
        }
    });
    Ok(job)
}

async fn run_training(state: &AppState, id: u64, from: i64, to: i64) -> Result<(), ApiError> {
    let training = &state.training;
    training.update(id, |j| j.phase = "loading");
    let total = state.store.count_telemetry(from, to).await?.max(1) as f64;
    let mut interner = Interner::default();
    let mut samples = Vec::new();
    let mut bad = 0u64;
    state
        .store
        .for_each_telemetry(from, to, |row| {
            let value = json!({
                "device_id": row.device_id,
                "ts": row.ts,
                "metrics": serde_json::from_str::<Value>(&row.metrics).unwrap_or(Value::Null),
                "cohort": row.cohort,
                "labels": serde_json::from_str::<Value>(&row.labels).unwrap_or(json!({})),
            });
            match sample_from_json(value, &mut interner) {
                Ok(s) => samples.push(s),
                Err(_) => bad += 1,
            }
            if samples.len() % 50_000 == 0 {
                let n = samples.len() as u64;
                training.update(id, |j| {
                    j.samples = n;
                    j.progress = 0.4 * n as f64 / total;
                });
            }
        })
        .await?;
    let n_samples = samples.len() as u64;
    if n_samples == 0 {
        return Err(ApiError::conflict("no stored telemetry in the asked time range"));
    }
    training.update(id, |j| {
        j.phase = "features";
        j.samples = n_samples;
        j.progress = 0.4;
    });
    let config: FleetConfig = state.settings.fleet_config.clone();
    let progress_state = state.clone();
    let started = Instant::now();
    let (bundle, rows, feature_secs) = tokio::task::spawn_blocking(move || {
        let (table, _) = extract_all(&config, samples);
        let feature_secs = started.elapsed().as_secs_f64();
        progress_state.training.update(id, |j| {
            j.phase = "training";
            j.rows = table.len() as u64;
            j.progress = 0.6;
        });
        let rows = table.len() as u64;
        FleetBundle::train(config, &table).map(|b| (b, rows, feature_secs))
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| ApiError::conflict(format!("training failed: {e}")))?;
    let train_secs = started.elapsed().as_secs_f64() - feature_secs;
    training.update(id, |j| {
        j.phase = "saving";
        j.progress = 0.9;
    });
    let version = training.job(id).map(|j| j.version).unwrap_or_default();
    let activate = training.job(id).is_some_and(|j| j.activate);
    let blob = bundle.to_bytes();
    let model = NewModel {
        version: version.clone(),
        params: json!({
            "trees": bundle.config.trees,
            "seed": bundle.config.seed,
            "contamination": bundle.config.contamination,
            "features": bundle.config.features.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            "from": (from != i64::MIN).then_some(from),
            "to": (to != i64::MAX).then_some(to),
        }),
        metrics: json!({
            "samples": n_samples,
            "samples_unreadable": bad,
            "rows": rows,
            "cohort_models": bundle.cohorts.keys().collect::<Vec<_>>(),
            "feature_secs": feature_secs,
            "train_secs": train_secs,
        }),
        blob,
    };
    let model_id = state.store.insert_model(&model, now_ms()).await.map_err(|e| match e {
        StoreError::Invalid(msg) => ApiError::conflict(msg),
        other => ApiError::from(other),
    })?;
    if activate {
        state.store.activate_model(model_id).await?;
        state.pipeline.set_bundle(ActiveBundle { bundle, version, model_id: Some(model_id) });
    }
    training.update(id, |j| {
        j.phase = "done";
        j.progress = 1.0;
        j.model_id = Some(model_id);
    });
    Ok(())
}

/// `GET /api/v1/models/train/{job}`.
#[utoipa::path(
    get,
    path = "/api/v1/models/train/{job}",
    operation_id = "get_training_job",
    tag = "models",
    summary = "Follow a training job",
    params(("job" = u64, Path, description = "Job id.")),
    responses(
        (status = 200, description = "The job.", body = TrainJob),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
    )
)]
pub async fn job(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<TrainJob>, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::invalid("job", "job ids are integers"))?;
    state
        .training
        .job(id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("training job {id} not found")))
}

/// `POST /api/v1/models/{id}/activate`: the registry first, then the running pipeline.
#[utoipa::path(
    post,
    path = "/api/v1/models/{id}/activate",
    operation_id = "activate_model",
    tag = "models",
    summary = "Activate a model",
    description = "The registry first, then the running pipeline: requests already scoring finish with \
        the bundle they hold, later ones get the new one.",
    params(("id" = i64, Path, description = "Model id.")),
    responses(
        (status = 200, description = "The model, now active.", body = ModelView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "The stored model does not load (`/problems/conflict`).",
            body = ApiError, content_type = "application/problem+json"),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn activate(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<ModelView>, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::invalid("id", "model ids are integers"))?;
    let (record, blob) = state.store.model(id).await?;
    let bundle = FleetBundle::from_bytes(&blob)
        .map_err(|e| ApiError::conflict(format!("model {} does not load: {e}", record.version)))?;
    let record = state.store.activate_model(id).await?;
    state.pipeline.set_bundle(ActiveBundle { bundle, version: record.version.clone(), model_id: Some(id) });
    Ok(Json(model_view(&record)))
}
