//! The OpenAPI document: it covers exactly the routes served, documents problem+json errors,
//! and describes what the handlers really send (real responses validated against it).

use std::collections::BTreeSet;

use anomalyd_engine::fleet::{FleetBundle, FleetConfig, SimParams, extract_all, simulate};
use anomalyd_service::ROUTES;
use serde_json::{Map, Value, json};

use super::{get, sample, server, server_with};

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Operations that take no parameters and no body, and so have no 4xx to document.
const NO_CLIENT_ERRORS: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/dashboard/stats"),
    ("GET", "/api/v1/models"),
];

async fn document(base: &str) -> Value {
    let (status, ctype, doc) = get(&format!("{base}/api/v1/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    doc
}

/// (method, path, operation) of every documented operation.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                out.push((method.to_ascii_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

/// A response object, through its `$ref` when it is one.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling {r}")),
        None => v,
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_covers_exactly_the_routes() {
    let s = server(0).await;
    let doc = document(&s.base).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "anomalyd");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let documented: BTreeSet<(String, String)> =
        operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(served.len(), ROUTES.len(), "a route is listed twice");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not documented: {undocumented:?}");
    assert!(not_served.is_empty(), "documented but not served: {not_served:?}");

    let ids: Vec<&str> =
        operations(&doc).iter().map(|(_, _, op)| op["operationId"].as_str().unwrap()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "operationIds repeat: {ids:?}");
    for (method, path, op) in operations(&doc) {
        let tags = op["tags"].as_array().map_or(0, Vec::len);
        assert_eq!(tags, 1, "{method} {path} has {tags} tags");
    }

    // Every listed route reaches a handler: the router's own 404 and 405 have no problem body.
    let client = reqwest::Client::new();
    for (method, path) in ROUTES {
        let url = format!(
            "{}{}",
            s.base,
            path.replace("{id}", "1").replace("{job}", "1").replace("{delivery}", "1")
        );
        let r = client.request(method.parse().unwrap(), &url).send().await.unwrap();
        let status = r.status().as_u16();
        let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_ne!(status, 405, "{method} {path}");
        assert!(status != 404 || ctype.as_deref() == Some("application/problem+json"), "{method} {path}");
    }
}

#[tokio::test]
async fn errors_are_documented_as_problem_json() {
    let s = server(0).await;
    let doc = document(&s.base).await;
    let problem = json!({"$ref": "#/components/schemas/ApiError"});
    for (method, path, op) in operations(&doc) {
        let mut client_errors = 0;
        for (status, response) in op["responses"].as_object().unwrap() {
            let code: u16 = status.parse().unwrap_or_else(|_| panic!("{method} {path}: status {status}"));
            let response = resolve(&doc, response);
            if code < 400 || code == 408 {
                // 408 comes from the timeout layer, with an empty body.
                continue;
            }
            let content = response["content"].as_object().unwrap();
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/problem+json"],
                "{method} {path} {status}"
            );
            assert_eq!(content["application/problem+json"]["schema"], problem, "{method} {path} {status}");
            if code == 503 {
                assert!(
                    response["headers"]["Retry-After"].is_object(),
                    "{method} {path}: 503 without Retry-After"
                );
            }
            if (400..500).contains(&code) {
                client_errors += 1;
            }
        }
        if NO_CLIENT_ERRORS.contains(&(method.as_str(), path.as_str())) {
            assert!(op["parameters"].is_null() && op["requestBody"].is_null(), "{method} {path} takes input");
        } else {
            assert!(client_errors > 0, "{method} {path} documents no 4xx problem");
        }
    }
    let problem_schema = &doc["components"]["schemas"]["ApiError"];
    let props: BTreeSet<&str> =
        problem_schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(props, BTreeSet::from(["type", "title", "status", "detail", "field"]));
}

#[tokio::test]
async fn the_docs_page_and_its_assets_are_served_offline() {
    let s = server(0).await;
    // reqwest follows the redirect from /docs to /docs/.
    let r = reqwest::get(format!("{}/docs", s.base)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.url().path(), "/docs/");
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = r.url().clone();
    let html = r.text().await.unwrap();
    let scripts: Vec<&str> = html
        .split("src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|s| s.ends_with(".js"))
        .collect();
    assert!(scripts.iter().any(|s| s.contains("swagger-ui-bundle")), "{scripts:?}");
    for src in scripts {
        let r = reqwest::get(page.join(src).unwrap()).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{src}");
        let text = r.text().await.unwrap();
        assert!(text.len() > 100, "{src} is nearly empty");
        if src.contains("initializer") {
            assert!(text.contains("/api/v1/openapi.json"), "the page does not load our document: {text}");
        }
    }
}

/// Every object schema closed against undocumented fields (`allOf` merged first, as closing
/// its parts separately would refuse each other's fields): stricter than the published
/// document on purpose, so a field the handlers add without documenting it fails here.
fn closed(schema: &Value, components: &Map<String, Value>) -> Value {
    match schema {
        Value::Object(o) => {
            let mut o: Map<String, Value> =
                o.iter().map(|(k, v)| (k.clone(), closed(v, components))).collect();
            if let Some(Value::Array(parts)) = o.remove("allOf") {
                let (mut props, mut required) = (Map::new(), Vec::new());
                for part in &parts {
                    let part = match part["$ref"].as_str() {
                        Some(r) => &components[r.rsplit('/').next().unwrap()],
                        None => part,
                    };
                    props.extend(part["properties"].as_object().cloned().unwrap_or_default());
                    required.extend(part["required"].as_array().cloned().unwrap_or_default());
                }
                o.insert("type".into(), json!("object"));
                o.insert("properties".into(), closed(&Value::Object(props), components));
                o.insert("required".into(), Value::Array(required));
            }
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), json!(false));
            }
            Value::Object(o)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| closed(v, components)).collect()),
        other => other.clone(),
    }
}

/// Sends a request and checks the answer against the document: its status is documented for
/// the operation, its content type too, and a JSON body validates against the schema.
async fn call(doc: &Value, method: &str, template: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method.parse().unwrap(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = r.text().await.unwrap();
    let what = format!("{method} {url} → {status}");

    let op = &doc["paths"][template][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {template} is not documented");
    let response = resolve(doc, &op["responses"][status.to_string()]);
    assert!(response.is_object(), "{what}: status not documented; body {text}");
    let essence = |t: &str| t.split(';').next().unwrap().trim().to_ascii_lowercase();
    let Some(content) = response["content"].as_object() else {
        assert!(text.is_empty(), "{what}: documented without a body, got {text}");
        return (status, Value::Null);
    };
    let media = content
        .iter()
        .find(|(k, _)| essence(k) == essence(&ctype))
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("{what}: content type {ctype} not documented ({:?})", content.keys()));
    if !essence(&ctype).ends_with("json") {
        return (status, Value::String(text));
    }
    let instance: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    let errors = violations(doc, &media["schema"], &instance);
    assert!(errors.is_empty(), "{what}: the body does not match the document:\n{errors:#?}\n{instance:#}");
    (status, instance)
}

/// How `instance` departs from `schema` (a schema of `doc`), with every object closed.
fn violations(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let components = doc["components"]["schemas"].as_object().unwrap();
    let closed_components: Map<String, Value> =
        components.iter().map(|(k, v)| (k.clone(), closed(v, components))).collect();
    let mut root = closed(schema, components);
    root["components"] = json!({"schemas": closed_components});
    let validator =
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("bad schema {schema}: {e}"));
    validator.iter_errors(instance).map(|e| format!("at `{}`: {e}", e.instance_path())).collect()
}

fn small_bundle() -> FleetBundle {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/fleet.toml")).unwrap();
    let cfg = FleetConfig::from_toml(&text).unwrap();
    let (samples, _) =
        simulate(&SimParams { devices: 40, samples: 200, seed: 3, fault_rate: 0.0, ..Default::default() });
    let (table, _) = extract_all(&cfg, samples);
    FleetBundle::train(cfg, &table).unwrap()
}

#[tokio::test]
async fn real_responses_match_the_document() {
    let bundle = small_bundle();
    let features: Vec<String> = bundle.config.features.iter().map(|f| f.name.clone()).collect();
    let s = server_with(12, Some(bundle)).await;
    let base = s.base.as_str();
    let doc = document(base).await;

    call(&doc, "GET", "/healthz", &format!("{base}/healthz"), None).await;
    call(&doc, "GET", "/readyz", &format!("{base}/readyz"), None).await;
    call(&doc, "GET", "/metrics", &format!("{base}/metrics"), None).await;

    let (_, list) =
        call(&doc, "GET", "/api/v1/anomalies", &format!("{base}/api/v1/anomalies?limit=5"), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    let id = list["items"][0]["id"].as_i64().unwrap();
    let one = "/api/v1/anomalies/{id}";
    call(&doc, "GET", one, &format!("{base}/api/v1/anomalies/{id}"), None).await;
    let (status, _) = call(&doc, "GET", one, &format!("{base}/api/v1/anomalies/999999"), None).await;
    assert_eq!(status, 404);
    let change = json!({"status": "acknowledged", "note": "on it"});
    call(&doc, "PATCH", one, &format!("{base}/api/v1/anomalies/{id}"), Some(change)).await;
    let troubleshoot = "/api/v1/anomalies/{id}/troubleshoot";
    let url = format!("{base}/api/v1/anomalies/{id}/troubleshoot");
    let (_, answer) = call(&doc, "POST", troubleshoot, &url, Some(json!({"refresh": false}))).await;
    assert_eq!(answer["source"], "rules", "no LLM is configured");
    let (status, _) =
        call(&doc, "POST", troubleshoot, &format!("{base}/api/v1/anomalies/999999/troubleshoot"), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&doc, "POST", troubleshoot, &url, Some(json!({"refresh": 1}))).await;
    assert_eq!(status, 400);
    let (status, _) =
        call(&doc, "GET", "/api/v1/anomalies", &format!("{base}/api/v1/anomalies?limit=0"), None).await;
    assert_eq!(status, 400);

    call(&doc, "GET", "/api/v1/devices", &format!("{base}/api/v1/devices"), None).await;
    let (_, device) =
        call(&doc, "GET", "/api/v1/devices/{id}", &format!("{base}/api/v1/devices/d1"), None).await;
    assert!(!device["anomalies"].as_array().unwrap().is_empty());

    let (_, incidents) =
        call(&doc, "GET", "/api/v1/incidents", &format!("{base}/api/v1/incidents"), None).await;
    let incident = incidents["items"][0]["id"].as_i64().expect("the seeded anomalies opened incidents");
    let one = "/api/v1/incidents/{id}";
    call(&doc, "GET", one, &format!("{base}/api/v1/incidents/{incident}"), None).await;
    let change = json!({"status": "resolved"});
    call(&doc, "PATCH", one, &format!("{base}/api/v1/incidents/{incident}"), Some(change)).await;

    call(&doc, "GET", "/api/v1/dashboard/stats", &format!("{base}/api/v1/dashboard/stats"), None).await;
    call(
        &doc,
        "GET",
        "/api/v1/dashboard/trends",
        &format!("{base}/api/v1/dashboard/trends?bucket=day"),
        None,
    )
    .await;
    let correlations = "/api/v1/insights/correlations";
    call(&doc, "GET", correlations, &format!("{base}{correlations}?min_affected=1"), None).await;

    let batch = json!([sample("x", 0, 30.0), sample("x", 1, 31.0)]);
    call(&doc, "POST", "/api/v1/telemetry", &format!("{base}/api/v1/telemetry"), Some(batch)).await;

    let url = format!("{base}/api/v1/score?explain=true&top=2");
    let by_name = json!({"features": {&features[0]: 1.0, &features[1]: null}, "cohort": "tc52/android-13"});
    let in_order = json!({"values": features.iter().map(|_| 0.5).collect::<Vec<_>>()});
    let (_, scored) = call(&doc, "POST", "/api/v1/score", &url, Some(by_name.clone())).await;
    assert!(scored["items"][0]["explanation"].is_array(), "{scored}");
    let items = json!([by_name, in_order, sample("y", 0, 30.0), sample("y", 1, 95.0)]);
    let (_, scored) = call(&doc, "POST", "/api/v1/score", &url, Some(items)).await;
    assert_eq!(scored["items"].as_array().unwrap().len(), 4);
    let (status, problem) = call(&doc, "POST", "/api/v1/score", &url, Some(json!({}))).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("features")), "an item of no kind is refused");

    call(&doc, "GET", "/api/v1/models", &format!("{base}/api/v1/models"), None).await;
    let (status, _) = call(
        &doc,
        "POST",
        "/api/v1/models/{id}/activate",
        &format!("{base}/api/v1/models/999/activate"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let train = json!({"version": "openapi-test", "from": 0, "to": "2100-01-01T00:00:00Z"});
    let (status, job) =
        call(&doc, "POST", "/api/v1/models/train", &format!("{base}/api/v1/models/train"), Some(train)).await;
    assert_eq!(status, 202);
    let job_url = format!("{base}/api/v1/models/train/{}", job["id"]);
    call(&doc, "GET", "/api/v1/models/train/{job}", &job_url, None).await;
    let (status, _) = call(
        &doc,
        "POST",
        "/api/v1/models/train",
        &format!("{base}/api/v1/models/train"),
        Some(json!({"colour": 1})),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn webhook_responses_match_the_document() {
    use super::webhooks::{fast, receiver, register, start, store_anomalies, wait_for};
    let rx = receiver(Vec::new()).await;
    let s = start(None, fast(3)).await;
    let base = s.base.as_str();
    let doc = document(base).await;
    let hooks = "/api/v1/webhooks";
    let (hook, _) = register(base, &rx.url, None).await;
    let new = json!({"url": "https://b.example/hook", "min_severity": "critical", "description": "pager"});
    let (status, created) = call(&doc, "POST", hooks, &format!("{base}{hooks}"), Some(new)).await;
    assert_eq!(status, 201);
    let (status, _) = call(&doc, "POST", hooks, &format!("{base}{hooks}"), Some(json!({"url": "x"}))).await;
    assert_eq!(status, 400);
    call(&doc, "GET", hooks, &format!("{base}{hooks}"), None).await;

    store_anomalies(&s.store, 1, 60_000).await;
    wait_for(base, hook, "status=delivered", |d| d.len() == 1).await;
    let list = "/api/v1/webhooks/{id}/deliveries";
    let (_, page) = call(&doc, "GET", list, &format!("{base}{hooks}/{hook}/deliveries"), None).await;
    assert!(page["items"][0]["payload"].is_object(), "{page}");
    let (status, _) = call(&doc, "GET", list, &format!("{base}{hooks}/999/deliveries"), None).await;
    assert_eq!(status, 404);
    let delivery = page["items"][0]["id"].as_i64().unwrap();
    let retry = "/api/v1/webhooks/{id}/deliveries/{delivery}/retry";
    let (status, _) =
        call(&doc, "POST", retry, &format!("{base}{hooks}/{hook}/deliveries/{delivery}/retry"), None).await;
    assert_eq!(status, 409);

    let one = "/api/v1/webhooks/{id}";
    let (status, _) = call(&doc, "DELETE", one, &format!("{base}{hooks}/{}", created["id"]), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&doc, "DELETE", one, &format!("{base}{hooks}/{}", created["id"]), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_check_refuses_undocumented_fields_and_wrong_types() {
    let s = server(3).await;
    let doc = document(&s.base).await;
    let url = format!("{}/api/v1/devices/d1", s.base);
    let (_, device) = call(&doc, "GET", "/api/v1/devices/{id}", &url, None).await;
    let schema = json!({"$ref": "#/components/schemas/DeviceDetail"});
    assert!(violations(&doc, &schema, &device).is_empty());
    for (pointer, value) in
        [("/colour", json!("red")), ("/anomalies/0/colour", json!(1)), ("/anomalies/0/id", json!("1"))]
    {
        let mut bad = device.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        bad.pointer_mut(parent).unwrap()[key] = value;
        assert!(!violations(&doc, &schema, &bad).is_empty(), "{pointer} passed");
    }
    let mut bad = device.clone();
    bad.as_object_mut().unwrap().remove("recent_metrics");
    assert!(!violations(&doc, &schema, &bad).is_empty(), "a missing field passed");
}

#[tokio::test]
async fn score_without_a_model_is_a_documented_conflict() {
    let s = server(0).await;
    let doc = document(&s.base).await;
    let url = format!("{}/api/v1/score", s.base);
    let (status, _) = call(&doc, "POST", "/api/v1/score", &url, Some(json!({"values": [1.0]}))).await;
    assert_eq!(status, 409);
}

/// Every `$ref` anywhere in `v`, with the JSON pointer of where it appears.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push((at.to_string(), r.clone())),
                    _ => refs(x, &format!("{at}/{k}"), out),
                }
            }
        }
        Value::Array(xs) => {
            for (i, x) in xs.iter().enumerate() {
                refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A dangling reference makes client generators and schemathesis skip what it describes
/// (a query parameter's enum was once such a case).
#[tokio::test]
async fn every_reference_in_the_document_resolves() {
    let s = server(0).await;
    let doc = document(&s.base).await;
    let mut found = Vec::new();
    refs(&doc, "", &mut found);
    assert!(found.len() > 20, "expected the document to use references, found {}", found.len());
    let dangling: Vec<_> = found
        .iter()
        .filter(|(_, r)| !r.starts_with('#') || doc.pointer(r.trim_start_matches('#')).is_none())
        .collect();
    assert!(dangling.is_empty(), "dangling references (where, target): {dangling:?}");
}

/// The documented pattern of a time parameter admits exactly the forms the API reads: each
/// text below is checked against the document and sent as `from`.
#[tokio::test]
async fn documented_time_pattern_agrees_with_the_parser() {
    let s = server(0).await;
    let doc = document(&s.base).await;
    let schema = &doc["components"]["schemas"]["TimeParam"];
    let validator = jsonschema::draft202012::new(schema).unwrap();
    let accepted = [
        "2026-11-26T10:15:00Z",
        "2026-11-26T10:15:00.123456789+05:30",
        "2026-11-26T10:15:00-08:00",
        "2026-11-26T10:15:00.5",
        "2026-11-26 10:15:00",
        "1764152100000",
        "-86400000",
    ];
    let refused = ["yesterday", "2026-13-01T00:00:00Z", "2026-11-26", "10:15:00", "2026-11-26T25:00:00Z", ""];
    for (text, documented) in accepted.iter().map(|t| (t, true)).chain(refused.iter().map(|t| (t, false))) {
        assert_eq!(validator.is_valid(&json!(text)), documented, "pattern on {text:?}");
        let url =
            format!("{}/api/v1/anomalies?from={}", s.base, text.replace('+', "%2B").replace(' ', "%20"));
        let (status, _, body) = get(&url).await;
        assert_eq!(status, if documented { 200 } else { 400 }, "API on {text:?}: {body}");
    }
}
