//! The OpenAPI 3.1 document of the API, generated from the handlers' `#[utoipa::path]`
//! annotations, and the interactive docs that serve it (Swagger UI, vendored into the binary
//! so `/docs` works offline).
//!
//! Also here: the reusable problem+json responses every handler refers to, and the schemas of
//! request bodies that handlers parse by hand (telemetry samples, score items), which have no
//! Rust type of their own to derive from.

use std::collections::BTreeMap;

use axum::Router;
use serde::Deserialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::{
    anomalies, dashboard, devices, health, incidents, ingest, insights, models, score, telemetry_metrics,
    troubleshoot, webhooks,
};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Where the interactive docs are served (`/docs` redirects to `/docs/`).
pub const DOCS_PATH: &str = "/docs";

/// The OpenAPI document; `ApiDoc::openapi()` builds it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "anomalyd",
        version = env!("CARGO_PKG_VERSION"),
        description = "Anomaly detection for device fleets: ingest telemetry, score it with an \
            isolation-forest model bundle and rules, and browse the anomalies, incidents, devices \
            and fleet-wide insights it finds.\n\n\
            Errors are RFC 9457 problem details (`application/problem+json`, schema `ApiError`) with \
            a stable `type`, a human `detail` and, for input errors, the `field` at fault. A `503` \
            carries `Retry-After`. Every request is cut off after 30 s with an empty `408`."
    ),
    paths(
        health::healthz,
        health::readyz,
        ingest::ingest,
        anomalies::list,
        anomalies::detail,
        anomalies::update,
        troubleshoot::troubleshoot,
        devices::list,
        devices::detail,
        incidents::list,
        incidents::detail,
        incidents::update,
        score::score,
        dashboard::stats,
        dashboard::trends,
        insights::correlations,
        models::list,
        models::train,
        models::job,
        models::activate,
        webhooks::list,
        webhooks::create,
        webhooks::delete,
        webhooks::deliveries,
        webhooks::retry,
        telemetry_metrics::render,
    ),
    components(
        schemas(ApiError, AnomalySort, TimeParam),
        responses(BadRequest, NotFound, PayloadTooLarge, Unavailable, Internal, RequestTimeout)
    ),
    modifiers(&EveryOperationMayTimeOut, &OptionalBodiesAreNotNull, &BearerKeys),
    tags(
        (name = "telemetry", description = "Ingest device telemetry."),
        (name = "anomalies", description = "Anomalies found in the telemetry, and their triage."),
        (name = "incidents", description = "Anomalies grouped per device and signature, with evidence."),
        (name = "devices", description = "Devices seen in the telemetry."),
        (name = "dashboard", description = "Fleet counters and trends, from maintained roll-ups."),
        (name = "insights", description = "Device attributes that go with open incidents."),
        (name = "models", description = "Train, list and activate model bundles."),
        (name = "scoring", description = "Score feature vectors or samples without storing them."),
        (name = "webhooks", description = "Signed alert deliveries for new incidents, and their dead letters."),
        (name = "health", description = "Probes and Prometheus metrics."),
    )
)]
pub struct ApiDoc;

/// `/api/v1/openapi.json` and `/docs`, outside [`crate::ROUTES`]: they describe the API
/// rather than belong to it.
pub fn docs_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, ApiDoc::openapi()).into()
}

fn operations(openapi: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// API keys: the bearer scheme, required by every route but the public probes, each
/// operation's scope in its description, and the 401/403 answers.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `anomalyd keys create`."))
                    .build(),
            ),
        );
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ApiError")))
                        .build(),
                )
                .build()
        };
        components.responses.insert(
            "Unauthorized".into(),
            RefOr::T(problem("No API key, or an unknown or revoked one (`WWW-Authenticate: Bearer`).")),
        );
        components
            .responses
            .insert("Forbidden".into(), RefOr::T(problem("The API key lacks the scope this route needs.")));
        components.responses.insert(
            "TooManyRequests".into(),
            RefOr::T(problem("The key's rate limit is used up; `Retry-After` says when to retry.")),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("PATCH", &mut item.patch),
                ("DELETE", &mut item.delete),
                ("PUT", &mut item.put),
            ] {
                let Some(op) = op.as_mut() else { continue };
                let scope = crate::ROUTES
                    .iter()
                    .position(|&(m, p)| m == method && p == path)
                    .map_or(crate::auth::Scope::Read, |i| crate::ROUTE_SCOPES[i]);
                if scope == crate::auth::Scope::Public {
                    op.security = Some(Vec::new());
                    continue;
                }
                op.security = Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new())]);
                let note = format!("Needs an API key with the `{}` scope.", scope.as_str());
                op.description = Some(match op.description.take() {
                    Some(d) => format!("{d}\n\n{note}"),
                    None => note,
                });
                op.responses
                    .responses
                    .insert("401".into(), RefOr::Ref(Ref::from_response_name("Unauthorized")));
                op.responses.responses.insert("403".into(), RefOr::Ref(Ref::from_response_name("Forbidden")));
                op.responses
                    .responses
                    .insert("429".into(), RefOr::Ref(Ref::from_response_name("TooManyRequests")));
            }
        }
    }
}

/// The timeout layer answers any route with an empty 408, so every operation documents it.
struct EveryOperationMayTimeOut;

impl Modify for EveryOperationMayTimeOut {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let (name, _) = RequestTimeout::response();
        for op in operations(openapi) {
            op.responses.responses.insert("408".into(), RefOr::Ref(Ref::from_response_name(name)));
        }
    }
}

/// utoipa documents an optional body (`Option<T>`) as "`null` or T", but a JSON `null` is
/// refused: the body is T or absent. (`required` stays unset, which says "may be absent".)
struct OptionalBodiesAreNotNull;

impl Modify for OptionalBodiesAreNotNull {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in operations(openapi) {
            let Some(body) = op.request_body.as_mut() else { continue };
            if body.required == Some(utoipa::openapi::Required::True) {
                continue;
            }
            for content in body.content.values_mut() {
                let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else { continue };
                let mut not_null = one_of.items.iter().filter(|s| !is_null(s));
                if let (Some(only), None) = (not_null.next(), not_null.next()) {
                    content.schema = Some(only.clone());
                }
            }
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == Type::Null.into())
}

fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        utoipa::openapi::Content::new(Some(RefOr::Ref(Ref::from_schema_name("ApiError")))),
    )
}

/// 400: a parameter or body field is invalid (`/problems/invalid-field`, naming the `field`),
/// or the body is malformed (`/problems/malformed-body`).
pub struct BadRequest;

impl<'s> ToResponse<'s> for BadRequest {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        let text = "A parameter or body field is invalid (`/problems/invalid-field`, with `field` naming \
                    it), or the body is malformed (`/problems/malformed-body`).";
        ("BadRequest", problem(text).build().into())
    }
}

/// 404: no such resource.
pub struct NotFound;

impl<'s> ToResponse<'s> for NotFound {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        ("NotFound", problem("No such resource (`/problems/not-found`).").build().into())
    }
}

/// 413: the body exceeds [`crate::MAX_BODY_BYTES`].
pub struct PayloadTooLarge;

impl<'s> ToResponse<'s> for PayloadTooLarge {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        let text = format!(
            "The body exceeds {} bytes (`/problems/body-too-large`); send smaller batches.",
            crate::MAX_BODY_BYTES
        );
        ("PayloadTooLarge", problem(&text).build().into())
    }
}

/// 503 with `Retry-After`: the database is busy or the ingest queue is full.
pub struct Unavailable;

impl<'s> ToResponse<'s> for Unavailable {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        let retry_after = utoipa::openapi::HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .description(Some("Seconds to wait before retrying."))
            .build();
        let text = "A dependency is unavailable: the database is busy, the ingest queue is full or the \
                    pipeline is shutting down (`/problems/unavailable`). Retry after `Retry-After` seconds.";
        ("Unavailable", problem(text).header("Retry-After", retry_after).build().into())
    }
}

/// 500: the server failed; the detail is in its log.
pub struct Internal;

impl<'s> ToResponse<'s> for Internal {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        ("Internal", problem("The server failed; see its log (`/problems/internal`).").build().into())
    }
}

/// 408 with an empty body: the request took longer than 30 s.
pub struct RequestTimeout;

impl<'s> ToResponse<'s> for RequestTimeout {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        let text = "The request took longer than 30 s and was cut off (empty body).";
        ("RequestTimeout", ResponseBuilder::new().description(text).build().into())
    }
}

/// A string among `values`.
pub(crate) fn string_enum(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied()))
}

/// Triage status of an anomaly or incident.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TriageStatus {
    /// Not looked at yet.
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Dealt with.
    Resolved,
}

/// Severity, from the model's grade (raised to `high` when only rules fired).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Severity {
    /// Grade just above the anomaly threshold.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// Where a feature's value lies relative to its training median.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Direction {
    /// Above.
    Above,
    /// Below.
    Below,
    /// The value is missing.
    Missing,
}

/// Phase of a training job.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TrainPhase {
    /// Waiting to start.
    Queued,
    /// Reading stored telemetry.
    Loading,
    /// Computing features.
    Features,
    /// Training the forests.
    Training,
    /// Storing the bundle.
    Saving,
    /// Finished; `model_id` is set.
    Done,
    /// Failed; `error` says why.
    Failed,
}

/// Width of a trend bucket.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum BucketWidth {
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

/// Order of the anomaly list.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum AnomalySort {
    /// Newest sample first.
    Time,
    /// Highest score first.
    Score,
}

/// The text forms of a time the API reads (`Timestamp::parse`): RFC 3339 with any offset,
/// the same without an offset or with a space for `T` (taken as UTC), or Unix milliseconds
/// as digits. Field ranges are spelled out so that generated values (schemathesis) are
/// mostly real times; day 31 of a short month still matches and is refused.
const TIME_PATTERN: &str = "^(-?[0-9]{1,18}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])\
    (T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?\
    | ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?))$";

/// [`TIME_PATTERN`] as a string schema.
fn time_text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(TIME_PATTERN)).description(Some(
        "RFC 3339 (`2026-11-26T10:15:00Z`, any offset), `YYYY-MM-DD HH:MM:SS[.fff]` taken as UTC, \
         or Unix milliseconds as digits",
    ))
}

/// A time in a query string (`from`, `to`): see [`TIME_PATTERN`].
pub struct TimeParam;

impl PartialSchema for TimeParam {
    fn schema() -> RefOr<Schema> {
        time_text().examples(["2026-11-26T10:15:00Z"]).into()
    }
}

impl ToSchema for TimeParam {}

/// A time as the API reads it: RFC 3339 text (or `YYYY-MM-DD HH:MM:SS` taken as UTC) or
/// integer Unix milliseconds. No `format: date-time`: more forms are accepted than that.
fn time_input() -> OneOfBuilder {
    OneOfBuilder::new().item(time_text()).item(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
            .description(Some("Unix milliseconds")),
    )
}

/// [`time_input`], or `null` for "not given".
pub(crate) fn optional_time_input() -> OneOfBuilder {
    time_input().item(ObjectBuilder::new().schema_type(Type::Null))
}

// The body schemas below derive `Deserialize` only so that utoipa reads their serde attributes
// (`deny_unknown_fields`, `default`, `untagged`); nothing deserialises into them.

/// One telemetry sample: what `POST /api/v1/telemetry` takes (and `POST /api/v1/score` as a
/// raw item). Unknown fields are refused. Only its schema is used: the engine parses samples
/// itself, to name the field at fault.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"device_id": "tc52-0042", "ts": "2026-11-26T10:15:00Z", "cohort": "tc52/android-13",
    "labels": {"site": "berlin"}, "metrics": {"battery_pct": 81.5, "battery_temp_c": 33.1, "cpu_pct": 22.0}}))]
pub struct TelemetrySample {
    /// Device identifier, 1 to 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    pub device_id: String,
    /// Sample time.
    #[schema(schema_with = time_input)]
    pub ts: serde_json::Value,
    /// Metric values by name (names not empty); finite numbers.
    pub metrics: BTreeMap<String, f64>,
    /// Cohort (e.g. model and OS); an empty string means none.
    #[serde(default)]
    pub cohort: Option<String>,
    /// Labels of the device (e.g. site); the device keeps the latest sent.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Samples in the JSON form of `POST /api/v1/telemetry`: an array of 1 to
/// [`ingest::MAX_BATCH`] samples.
pub struct TelemetryBatch;

impl PartialSchema for TelemetryBatch {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(RefOr::Ref(Ref::from_schema_name("TelemetrySample")))
            .min_items(Some(1))
            .max_items(Some(ingest::MAX_BATCH))
            .into()
    }
}

impl ToSchema for TelemetryBatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("TelemetrySample".into(), TelemetrySample::schema()));
    }
}

/// A feature vector by name; features left out are missing values.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureVectorItem {
    /// Values by feature name (names the active model has); `null` is a missing value.
    pub features: BTreeMap<String, Option<f64>>,
    /// Cohort, to score with its model when it has one.
    #[serde(default)]
    pub cohort: Option<String>,
}

/// A feature vector in the model's feature order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueVectorItem {
    /// One value per feature of the active model, in its order; `null` is a missing value.
    pub values: Vec<Option<f64>>,
    /// Cohort, to score with its model when it has one.
    #[serde(default)]
    pub cohort: Option<String>,
}

/// One item of `POST /api/v1/score`. A raw sample's features are computed from the samples
/// of the same device in this request only, in time order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ScoreItem {
    /// Features by name.
    Features(FeatureVectorItem),
    /// Features in model order.
    Values(ValueVectorItem),
    /// A raw telemetry sample.
    Sample(TelemetrySample),
}

/// Body of `POST /api/v1/score`: one item, or an array of 1 to 10 000 items.
pub struct ScoreRequest;

impl PartialSchema for ScoreRequest {
    fn schema() -> RefOr<Schema> {
        let item = || RefOr::Ref(Ref::from_schema_name("ScoreItem"));
        OneOfBuilder::new()
            .item(item())
            .item(ArrayBuilder::new().items(item()).min_items(Some(1)).max_items(Some(score::MAX_ITEMS)))
            .into()
    }
}

impl ToSchema for ScoreRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("ScoreItem".into(), ScoreItem::schema()));
        <ScoreItem as ToSchema>::schemas(schemas);
    }
}
