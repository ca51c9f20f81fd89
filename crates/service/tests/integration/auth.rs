//! Every route × no key / revoked key / wrong scope / right scope, over real HTTP.

use std::time::Duration;

use crate::serve_on_free_port;
use anomalyd_service::auth::{AuthSettings, Scope, generate_key};
use anomalyd_service::{AppState, ROUTE_SCOPES, ROUTES, ServiceSettings};
use anomalyd_store::{Store, StoreOptions, hash_key};

async fn key(store: &Store, name: &str, scopes: &str) -> String {
    let key = generate_key();
    store.create_api_key(name, scopes, &hash_key(&key), 1).await.unwrap();
    key
}

#[tokio::test]
async fn every_route_checks_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let read = key(&store, "reader", "read").await;
    let write = key(&store, "writer", "write").await;
    let admin = key(&store, "admin", "admin").await;
    let nothing = key(&store, "no scopes", "").await;
    let revoked = key(&store, "gone", "admin").await;
    let gone_id = store.list_api_keys().await.unwrap().iter().find(|k| k.name == "gone").unwrap().id;
    store.revoke_api_key(gone_id, 2).await.unwrap();
    let settings = ServiceSettings {
        auth: AuthSettings { cache_ttl: Duration::ZERO, ..AuthSettings::default() },
        ..Default::default()
    };
    let base = serve_on_free_port(AppState::with_settings(store.clone(), None, settings)).await;

    let client = reqwest::Client::new();
    let call = |method: &str, path: &str, key: Option<&str>| {
        let url =
            format!("{base}{}", path.replace("{id}", "1").replace("{job}", "1").replace("{delivery}", "1"));
        let mut req = match method {
            "GET" => client.get(&url),
            "POST" => client.post(&url).json(&serde_json::json!({})),
            "PATCH" => client.patch(&url).json(&serde_json::json!({"status": "acknowledged"})),
            "DELETE" => client.delete(&url),
            other => panic!("{other}"),
        };
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let www = r.headers().get("www-authenticate").is_some();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (status, www, body)
        }
    };
    assert_eq!(ROUTES.len(), ROUTE_SCOPES.len());
    for (&(method, path), &scope) in ROUTES.iter().zip(ROUTE_SCOPES) {
        let right = match scope {
            Scope::Public | Scope::Read => &read,
            Scope::Write => &write,
            Scope::Admin => &admin,
        };
        let (status, _, body) = call(method, path, Some(right)).await;
        assert!(
            status != 401 && status != 403,
            "{method} {path} with a `{}` key: {status} {body}",
            scope.as_str()
        );
        if scope == Scope::Public {
            let (status, _, _) = call(method, path, None).await;
            assert!(status != 401 && status != 403, "{method} {path} is public");
            continue;
        }
        let (status, www, body) = call(method, path, None).await;
        assert_eq!((status, www), (401, true), "{method} {path} without a key: {body}");
        assert_eq!(body["type"], "/problems/unauthorized");
        let (status, _, body) = call(method, path, Some("adk_not-a-key")).await;
        assert_eq!(status, 401, "{method} {path} with an unknown key: {body}");
        let (status, _, body) = call(method, path, Some(&revoked)).await;
        assert_eq!(status, 401, "{method} {path} with a revoked key: {body}");
        assert!(body["detail"].as_str().unwrap().contains("revoked"));
        let wrong = match scope {
            Scope::Read => &nothing,
            Scope::Write => &read,
            _ => &write,
        };
        let (status, _, body) = call(method, path, Some(wrong)).await;
        assert_eq!(status, 403, "{method} {path} with a key lacking `{}`: {body}", scope.as_str());
        assert_eq!(body["type"], "/problems/forbidden");
    }
    // Only hashes are stored.
    let keys = store.list_api_keys().await.unwrap();
    assert_eq!(keys.len(), 5);
    let dump = std::fs::read(dir.path().join("a.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("a.db-wal")).unwrap_or_default();
    for k in [&read, &write, &admin] {
        let needle = k.as_bytes();
        for bytes in [&dump, &wal] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "a key is stored in clear");
        }
    }
}
