//! The dashboard's files over real HTTP: the shell at `/`, versioned assets cached for good,
//! entity tags, the Content-Security-Policy, and no key needed for any of it.

use crate::serve_on_free_port;
use anomalyd_service::auth::AuthSettings;
use anomalyd_service::{AppState, ServiceSettings};
use anomalyd_store::{Store, StoreOptions};

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path().join("a.db").to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    // Keys are required: the files are public, the data behind them is not.
    let settings = ServiceSettings { auth: AuthSettings::default(), ..Default::default() };
    let base = serve_on_free_port(AppState::with_settings(store, None, settings)).await;
    let client = reqwest::Client::new();

    let r = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    // Our files, plus the shell's one inline script and stylesheet by hash; nothing else inline.
    assert!(csp.contains("script-src 'self' 'sha256-") && csp.contains("style-src 'self' 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let html = r.text().await.unwrap();
    assert_eq!(html.matches("<script>").count(), 1, "one inline script: the boot block");
    assert!(html.contains("globalThis.anomalydBoot"), "the boot script is inlined");
    let version = anomalyd_service::ui::asset_version();
    assert!(html.contains(&format!("/ui/{version}/app.js")), "{html}");

    // Revalidation answers 304 without a body.
    let r = client.get(format!("{base}/")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    // Every file the shell names is served, immutable under the current version.
    let mut paths: Vec<String> =
        html.split("/ui/").skip(1).map(|p| p.split('"').next().unwrap().to_string()).collect();
    let named = paths.len();
    assert!(named >= 7, "the shell names the first modules and the icon ({named})");
    // The pages the shell imports on demand are served the same way.
    let app = paths.iter().find(|p| p.ends_with("/app.js")).expect("the shell loads app.js").clone();
    let app_js = client.get(format!("{base}/ui/{app}")).send().await.unwrap().text().await.unwrap();
    let dir = app.rsplit_once('/').unwrap().0.to_string();
    for part in app_js.split("import('./").skip(1) {
        paths.push(format!("{dir}/{}", part.split('\'').next().unwrap()));
    }
    assert!(paths.len() >= named + 5, "app.js imports the other pages on demand: {paths:?}");
    for path in &paths {
        let r = client.get(format!("{base}/ui/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable", "{path}");
        assert!(r.headers().contains_key("etag"), "{path}");
        let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
        let want = match path.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            _ => "image/svg+xml",
        };
        assert_eq!(ctype, want, "{path}");
    }

    // An older version's URL still works but is not cached for good; unknown files are 404.
    let r = client.get(format!("{base}/ui/0000/app.js")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["cache-control"].to_str().unwrap()), (200, "no-cache"));
    let r = client.get(format!("{base}/ui/{version}/secret.txt")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // The API still asks for a key.
    let r = client.get(format!("{base}/api/v1/dashboard/stats")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
