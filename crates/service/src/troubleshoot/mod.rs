//! `POST /api/v1/anomalies/{id}/troubleshoot`: steps to fix the problem behind an anomaly.
//!
//! With an OpenAI-compatible chat-completions endpoint configured, the LLM is asked (see
//! [`llm`]) and its answer cached in the database under the hash of the anomaly's signature
//! and model version, for `cache_ttl`: every anomaly of one kind scored by one model shares
//! one answer, so the LLM is asked once per problem, not once per click. Concurrent requests
//! for one key share one LLM call. When the LLM fails (after its retries, or past the time
//! budget of the request), or when none is configured, the answer is built deterministically
//! from the explanation and the rules table (see [`rules`]); that answer is never cached.

mod llm;
pub mod rules;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anomalyd_engine::fleet::{FleetConfig, RuleSpec};
use anomalyd_store::{AnomalyRecord, CachedAnswer, Store, troubleshoot_cache_key};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use utoipa::ToSchema;

use self::llm::LlmClient;
use self::rules::{RuleDirection, TroubleshootRule};
use crate::error::ApiError;
use crate::{AppState, now_ms};

/// Settings of troubleshooting.
#[derive(Clone)]
pub struct TroubleshootSettings {
    /// Base URL of an OpenAI-compatible API (`…/v1`); `None`: deterministic answers only.
    pub endpoint: Option<reqwest::Url>,
    /// Model name sent to the endpoint.
    pub model: String,
    /// Bearer key of the endpoint, if it needs one.
    pub api_key: Option<String>,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Attempts after the first one, on timeouts, transport errors, 5xx and 429.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// How long an LLM answer is served from the cache.
    pub cache_ttl: Duration,
    /// The rules table, first match wins (settings' rules, then the built-in ones).
    pub rules: Vec<TroubleshootRule>,
}

impl Default for TroubleshootSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            model: "gpt-4o-mini".into(),
            api_key: None,
            // Three attempts fit in the 30 s request timeout with room for the fallback.
            timeout: Duration::from_secs(8),
            retries: 2,
            backoff: Duration::from_millis(250),
            cache_ttl: Duration::from_secs(24 * 3600),
            rules: rules::builtin_rules(),
        }
    }
}

// The API key stays out of logs and panics.
impl fmt::Debug for TroubleshootSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TroubleshootSettings")
            .field("endpoint", &self.endpoint.as_ref().map(reqwest::Url::as_str))
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("cache_ttl", &self.cache_ttl)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// Parses an endpoint setting: an absolute `http` or `https` URL.
pub fn parse_endpoint(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("`{text}` is not an http(s) URL"));
    }
    Ok(url)
}

/// A feature of the explanation, as the answer uses it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attribution {
    pub feature: String,
    pub weight: f64,
    /// Side of the training median; `None` when the value is missing.
    pub direction: Option<RuleDirection>,
    pub value: Option<f64>,
    pub normal_low: Option<f64>,
    pub normal_high: Option<f64>,
    /// Raw metrics the feature is computed from.
    pub metrics: Vec<String>,
}

/// A heuristic detector that fired.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FiredRule {
    pub name: String,
    pub metric: Option<String>,
    /// The side a threshold rule watches; `None` for other kinds.
    pub direction: Option<RuleDirection>,
}

/// What is known about an anomaly, read once from its record.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub anomaly_id: i64,
    pub device_id: String,
    pub cohort: Option<String>,
    pub ts: i64,
    pub anomaly_score: f64,
    pub grade: f64,
    pub severity: String,
    pub model_version: Option<String>,
    pub signature: String,
    /// By share of the score, largest first.
    pub features: Vec<Attribution>,
    pub fired: Vec<FiredRule>,
}

/// One stored explanation entry (see `pipeline::new_anomaly`); every field may be absent in
/// rows written by other tools.
#[derive(Deserialize)]
struct StoredAttribution {
    feature: String,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    normal_low: Option<f64>,
    #[serde(default)]
    normal_high: Option<f64>,
}

/// Metrics behind a feature: the configuration knows; else the `metric.stat` name tells.
fn metrics_of(config: &FleetConfig, feature: &str) -> Vec<String> {
    match config.feature_index(feature) {
        Some(i) => config.feature_metrics(i).into_iter().map(str::to_string).collect(),
        None => vec![feature.split_once('.').map_or(feature, |(m, _)| m).to_string()],
    }
}

impl Context {
    pub(crate) fn new(a: &AnomalyRecord, signature: Option<String>, config: &FleetConfig) -> Self {
        let stored: Vec<StoredAttribution> = serde_json::from_str(&a.explanation).unwrap_or_default();
        let mut features: Vec<Attribution> = stored
            .into_iter()
            .map(|s| Attribution {
                metrics: metrics_of(config, &s.feature),
                direction: match s.direction.as_deref() {
                    Some("above") => Some(RuleDirection::Above),
                    Some("below") => Some(RuleDirection::Below),
                    _ => None,
                },
                feature: s.feature,
                weight: s.weight.unwrap_or(0.0),
                value: s.value.filter(|v| v.is_finite()),
                normal_low: s.normal_low.filter(|v| v.is_finite()),
                normal_high: s.normal_high.filter(|v| v.is_finite()),
            })
            .collect();
        // Stable, total order: weight, then name, so equal weights cannot reorder the answer.
        features.sort_by(|x, y| y.weight.total_cmp(&x.weight).then_with(|| x.feature.cmp(&y.feature)));
        let detectors: Vec<String> = serde_json::from_str(&a.detectors).unwrap_or_default();
        let fired: Vec<FiredRule> = detectors
            .into_iter()
            .filter(|d| d != "model")
            .map(|name| {
                let spec = config.rules.iter().find(|r| r.name() == name);
                let direction = match spec {
                    Some(RuleSpec::Threshold { above: Some(_), below: None, .. }) => {
                        Some(RuleDirection::Above)
                    }
                    Some(RuleSpec::Threshold { above: None, below: Some(_), .. }) => {
                        Some(RuleDirection::Below)
                    }
                    _ => None,
                };
                FiredRule { metric: spec.and_then(RuleSpec::metric).map(str::to_string), direction, name }
            })
            .collect();
        let signature = signature.unwrap_or_else(|| derived_signature(&features, &fired));
        Context {
            anomaly_id: a.id,
            device_id: a.device_id.clone(),
            cohort: a.cohort.clone(),
            ts: a.ts,
            anomaly_score: a.anomaly_score,
            grade: a.grade,
            severity: a.severity.clone(),
            model_version: a.model_version.clone(),
            signature,
            features,
            fired,
        }
    }
}

/// The signature the pipeline would have given an anomaly, for one stored without an
/// incident: the rules that fired and their metrics, else `model` and the metrics of the top
/// two features.
fn derived_signature(features: &[Attribution], fired: &[FiredRule]) -> String {
    let (names, mut metrics): (Vec<String>, Vec<String>) = if fired.is_empty() {
        (vec!["model".into()], features.iter().take(2).flat_map(|f| f.metrics.clone()).collect())
    } else {
        let mut names: Vec<String> = fired.iter().map(|d| d.name.clone()).collect();
        names.sort();
        (names, fired.iter().filter_map(|d| d.metric.clone()).collect())
    };
    metrics.sort();
    metrics.dedup();
    format!("{}|{}", names.join("+"), metrics.join(","))
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnswerSource {
    /// The configured LLM (now or from the cache).
    Llm,
    /// The rules table and the explanation.
    Rules,
}

/// A troubleshooting answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"anomaly_id": 42, "signature": "battery_overheat|battery_temp_c",
    "model_version": "fleet-20261126/global", "source": "llm", "cached": true,
    "summary": "The battery overheats while charging.",
    "steps": ["Move the device out of direct sun.", "Replace the battery if it stays above 50 °C."],
    "created_at": 1764151200000i64, "expires_at": 1764237600000i64, "fallback_reason": null}))]
pub struct TroubleshootAnswer {
    /// The anomaly asked about.
    pub anomaly_id: i64,
    /// Its signature: the problem the answer is about, shared by similar anomalies.
    pub signature: String,
    /// Version of the model that scored the anomaly (part of the cache key).
    pub model_version: Option<String>,
    /// `llm`, or `rules` when no LLM is configured or it failed.
    pub source: AnswerSource,
    /// Served from the cache (always `false` for `rules`).
    pub cached: bool,
    /// Likely cause.
    pub summary: String,
    /// What to do, in order.
    pub steps: Vec<String>,
    /// When the answer was made, Unix ms.
    pub created_at: i64,
    /// When the cached answer expires, Unix ms; `null` for answers that are not cached.
    pub expires_at: Option<i64>,
    /// Why the LLM's answer is missing when one is configured; `null` otherwise.
    pub fallback_reason: Option<String>,
}

/// Body of `POST /api/v1/anomalies/{id}/troubleshoot`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TroubleshootRequest {
    /// Ask the LLM again and replace the cached answer (default false).
    #[serde(default)]
    pub refresh: bool,
}

/// An LLM answer, shared by the requests that waited for one call.
type Flight = Arc<OnceCell<FlightResult>>;

/// The answer and whether the LLM wrote it just now, or why there is none.
type FlightResult = Result<(CachedAnswer, bool), String>;

/// LLM client, cache and single-flight of troubleshooting; one per server.
pub struct Troubleshooter {
    settings: TroubleshootSettings,
    client: Option<LlmClient>,
    /// Most time the LLM may take for one request (retries included), so that the fallback
    /// answer still goes out before the request times out.
    budget: Duration,
    flights: Mutex<HashMap<String, Weak<OnceCell<FlightResult>>>>,
}

impl Troubleshooter {
    /// A troubleshooter whose LLM calls end within `budget`.
    pub fn new(settings: TroubleshootSettings, budget: Duration) -> Self {
        let client = settings.endpoint.as_ref().and_then(|url| match LlmClient::new(url, &settings) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the LLM client; troubleshooting uses the rules table");
                None
            }
        });
        Self { settings, client, budget, flights: Mutex::new(HashMap::new()) }
    }

    fn flight(&self, key: &str) -> Flight {
        let mut flights = self.flights.lock().expect("flights lock");
        if let Some(f) = flights.get(key).and_then(Weak::upgrade) {
            return f;
        }
        // Entries whose requests are all gone are dead weight.
        flights.retain(|_, f| f.strong_count() > 0);
        let f: Flight = Arc::default();
        flights.insert(key.to_string(), Arc::downgrade(&f));
        f
    }

    fn land(&self, key: &str, flight: &Flight) {
        let mut flights = self.flights.lock().expect("flights lock");
        if flights.get(key).is_some_and(|f| f.ptr_eq(&Arc::downgrade(flight))) {
            flights.remove(key);
        }
    }

    fn rules_answer(&self, ctx: &Context, fallback_reason: Option<String>) -> TroubleshootAnswer {
        let (summary, steps) = rules::answer(&self.settings.rules, ctx);
        TroubleshootAnswer {
            anomaly_id: ctx.anomaly_id,
            signature: ctx.signature.clone(),
            model_version: ctx.model_version.clone(),
            source: AnswerSource::Rules,
            cached: false,
            summary,
            steps,
            created_at: now_ms(),
            expires_at: None,
            fallback_reason,
        }
    }

    /// The answer for the anomaly in `ctx`: cached, fresh from the LLM, or from the rules.
    pub(crate) async fn answer(
        &self,
        store: &Store,
        ctx: &Context,
        refresh: bool,
    ) -> Result<TroubleshootAnswer, ApiError> {
        let Some(client) = &self.client else {
            return Ok(self.rules_answer(ctx, None));
        };
        let key = troubleshoot_cache_key(&ctx.signature, ctx.model_version.as_deref());
        let llm_answer = |c: CachedAnswer, cached: bool| TroubleshootAnswer {
            anomaly_id: ctx.anomaly_id,
            signature: ctx.signature.clone(),
            model_version: ctx.model_version.clone(),
            source: AnswerSource::Llm,
            cached,
            summary: c.summary,
            steps: c.steps,
            created_at: c.created_at,
            expires_at: Some(c.expires_at),
            fallback_reason: None,
        };
        if !refresh && let Some(hit) = store.cached_troubleshoot(&key, &self.settings.model, now_ms()).await?
        {
            return Ok(llm_answer(hit, true));
        }
        // Refreshes share a call among themselves but never take a plain request's result,
        // which may be the cached answer they want replaced.
        let flight_key = if refresh { format!("{key}\nrefresh") } else { key.clone() };
        let flight = self.flight(&flight_key);
        let mut led = false;
        let result = flight
            .get_or_init(|| {
                led = true;
                async move {
                    // A call that finished between this request's cache miss and now has
                    // stored its answer.
                    if !refresh {
                        match store.cached_troubleshoot(&key, &self.settings.model, now_ms()).await {
                            Ok(Some(hit)) => return Ok((hit, false)),
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "cannot read the troubleshooting cache"),
                        }
                    }
                    self.ask(store, client, ctx, &key).await.map(|a| (a, true))
                }
            })
            .await
            .clone();
        self.land(&flight_key, &flight);
        match result {
            // Only the request that made the call got a fresh answer; the others were served
            // one they did not cause, as from the cache.
            Ok((answer, fresh)) => Ok(llm_answer(answer, !(led && fresh))),
            Err(reason) => Ok(self.rules_answer(ctx, Some(reason))),
        }
    }

    /// One LLM call (with retries, within the budget); caches a good answer.
    async fn ask(
        &self,
        store: &Store,
        client: &LlmClient,
        ctx: &Context,
        key: &str,
    ) -> Result<CachedAnswer, String> {
        let prompt = llm::user_prompt(ctx, &self.settings.rules);
        let advice = match tokio::time::timeout(self.budget, client.ask(llm::SYSTEM_PROMPT, &prompt)).await {
            Ok(Ok(advice)) => advice,
            Ok(Err((e, attempts))) => {
                tracing::warn!(error = %e, attempts, signature = %ctx.signature, "LLM failed; answering from the rules table");
                let plural = if attempts == 1 { "" } else { "s" };
                return Err(format!("the LLM failed after {attempts} attempt{plural}: {e}"));
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = self.budget.as_millis() as u64,
                    "LLM out of time; answering from the rules table"
                );
                return Err(format!(
                    "the LLM did not answer within the request's budget of {} ms",
                    self.budget.as_millis()
                ));
            }
        };
        let now = now_ms();
        let answer = CachedAnswer {
            cache_key: key.to_string(),
            signature: ctx.signature.clone(),
            model_version: ctx.model_version.clone(),
            llm_model: self.settings.model.clone(),
            summary: advice.summary,
            steps: advice.steps,
            created_at: now,
            expires_at: now
                .saturating_add(i64::try_from(self.settings.cache_ttl.as_millis()).unwrap_or(i64::MAX)),
        };
        // A good answer is served even when it cannot be cached.
        if let Err(e) = store.put_troubleshoot(&answer).await {
            tracing::warn!(error = %e, "cannot cache the troubleshooting answer");
        }
        Ok(answer)
    }
}

/// `POST /api/v1/anomalies/{id}/troubleshoot`.
#[utoipa::path(
    post,
    path = "/api/v1/anomalies/{id}/troubleshoot",
    operation_id = "troubleshoot_anomaly",
    tag = "anomalies",
    summary = "Steps to fix the problem behind an anomaly",
    description = "With an LLM endpoint configured, its answer for the anomaly's signature and model \
        version, cached for the configured TTL (`cached: true` when served from the cache; \
        `refresh: true` asks again and replaces it). Without one, or when it fails or is too slow, a \
        deterministic answer from the explanation and the rules table (`source: rules`, with \
        `fallback_reason` saying why the LLM's is missing); that answer is never cached. An empty \
        body (no content type) means `{\"refresh\": false}`.",
    params(("id" = i64, Path, description = "Anomaly id.")),
    request_body(content = Option<TroubleshootRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer.", body = TroubleshootAnswer),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn troubleshoot(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<TroubleshootRequest>, JsonRejection>,
) -> Result<Json<TroubleshootAnswer>, ApiError> {
    let id = crate::anomalies::id_param(id)?;
    let Json(body) = match body {
        Ok(b) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => Json(TroubleshootRequest::default()),
        Err(e) => return Err(ApiError::body_rejection(e.status(), e.body_text())),
    };
    let anomaly = state.store.anomaly(id).await?;
    let signature = state.store.anomaly_signature(id).await?;
    // The features were computed with the scoring bundle's configuration; without one, the
    // configured one is the best guess.
    let bundle = state.pipeline.bundle();
    let config = bundle.as_ref().map_or(&state.settings.fleet_config, |b| &b.bundle.config);
    let ctx = Context::new(&anomaly, signature, config);
    let answer = state.troubleshoot.answer(&state.store, &ctx, body.refresh).await?;
    let source = match (answer.source, answer.cached) {
        (AnswerSource::Llm, true) => "cache",
        (AnswerSource::Llm, false) => "llm",
        (AnswerSource::Rules, _) => "rules",
    };
    metrics::counter!("anomalyd_troubleshoot_total", "source" => source).increment(1);
    Ok(Json(answer))
}
