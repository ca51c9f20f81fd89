//! The web dashboard (SPEC §8): hand-written ES modules, CSS and an HTML shell, embedded in
//! the binary and served beside the API. The pages fetch their data from `/api/v1` with the
//! operator's key, so the files themselves are public.
//!
//! Assets live under `/ui/<version>/…`, where the version is a hash of every embedded file:
//! a new binary gets new URLs, so they can be cached for a year, while `/` (the shell that
//! names the version) is revalidated on every load. Modules import each other by relative
//! path, so they all resolve under the same version. Every answer carries an `ETag`.
//!
//! The shell carries two files inline: `boot.js`, which sends the overview's data requests
//! while the page is still being parsed, and `style.css`, so no stylesheet request holds
//! back the first paint. The page's Content-Security-Policy allows exactly those two inline
//! blocks by their SHA-256 hashes and nothing else inline.
//!
//! Routing is by URL fragment (`/#/anomalies/42`): the server only ever serves the shell.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Where the dashboard's assets are served (followed by `/<version>/<file>`).
pub const ASSET_PREFIX: &str = "/ui";

/// Scripts and styles only from our own files and the shell's two inline blocks (named by
/// hash), data only from our own API.
fn content_security_policy(boot_hash: &str, style_hash: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' '{boot_hash}'; style-src 'self' '{style_hash}'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The CSP source expression of an inline block: `sha256-` and the base64 of its digest.
fn csp_hash(text: &str) -> String {
    use base64::Engine as _;
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes())))
}

/// An embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $type:expr,)*) => {
        &[$(Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $path)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the dashboard but the shell.
const ASSETS: &[Asset] = assets! {
    "app.js" => JS,
    "api.js" => JS,
    "charts.js" => JS,
    "dom.js" => JS,
    "pages/overview.js" => JS,
    "pages/anomalies.js" => JS,
    "pages/anomaly.js" => JS,
    "pages/incident.js" => JS,
    "pages/device.js" => JS,
    "pages/models.js" => JS,
    "favicon.svg" => "image/svg+xml",
};

/// The shell; `{{v}}` stands for the asset version, `{{boot}}` and `{{style}}` for the
/// inlined files.
const INDEX: &str = include_str!("../assets/index.html");
/// Inlined into the shell as a classic script.
const BOOT: &str = include_str!("../assets/boot.js");
/// Inlined into the shell as its stylesheet.
const STYLE: &str = include_str!("../assets/style.css");

/// Version, shell, entity tags and the CSP naming the shell's inline blocks, computed once.
struct Build {
    version: String,
    index: String,
    index_etag: String,
    etags: Vec<String>,
    csp: HeaderValue,
}

fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex(&digest[..10]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

static BUILD: LazyLock<Build> = LazyLock::new(|| {
    let mut all = Sha256::new();
    for text in [INDEX, BOOT, STYLE] {
        all.update(text.as_bytes());
    }
    for a in ASSETS {
        all.update(a.path.as_bytes());
        all.update(a.body);
    }
    let version = hex(&all.finalize()[..6]);
    // The inlined files are plain text and never contain `</script>` or `</style>` (a test
    // checks); `{{v}}` is replaced last, so only the shell's own placeholders change.
    let index = INDEX.replace("{{boot}}", BOOT).replace("{{style}}", STYLE).replace("{{v}}", &version);
    let csp = content_security_policy(&csp_hash(BOOT), &csp_hash(STYLE));
    Build {
        index_etag: etag(index.as_bytes()),
        etags: ASSETS.iter().map(|a| etag(a.body)).collect(),
        index,
        version,
        csp: HeaderValue::from_str(&csp).expect("the CSP is ASCII"),
    }
});

/// The version part of the assets' URLs (a hash of every embedded file).
pub fn asset_version() -> &'static str {
    &BUILD.version
}

/// The dashboard's routes: the shell at `/` and the assets under [`ASSET_PREFIX`].
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route(&format!("{ASSET_PREFIX}/{{version}}/{{*file}}"), get(asset))
}

/// Whether the request's `If-None-Match` names `tag`.
fn matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == tag
        })
}

fn answer(
    headers: &HeaderMap,
    tag: &str,
    cache: &'static str,
    content_type: &'static str,
    body: &'static [u8],
) -> Response {
    let mut res = if matches(headers, tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(tag) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, BUILD.csp.clone());
    res
}

async fn index(headers: HeaderMap) -> Response {
    let b = &*BUILD;
    answer(&headers, &b.index_etag, "no-cache", "text/html; charset=utf-8", b.index.as_bytes())
}

async fn asset(headers: HeaderMap, Path((version, file)): Path<(String, String)>) -> Response {
    let b = &*BUILD;
    let Some(i) = ASSETS.iter().position(|a| a.path == file) else {
        return ApiError::not_found(format!("the dashboard has no file `{file}`")).into_response();
    };
    // A page loaded from an older binary may still ask for its version: serve today's file,
    // but only the current version's URLs are immutable.
    let cache = if version == b.version { "public, max-age=31536000, immutable" } else { "no-cache" };
    let a = &ASSETS[i];
    answer(&headers, &b.etags[i], cache, a.content_type, a.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_inlines_boot_and_style_and_the_csp_allows_exactly_them() {
        let b = &*BUILD;
        for placeholder in ["{{v}}", "{{boot}}", "{{style}}"] {
            assert!(!b.index.contains(placeholder), "{placeholder} left in the shell");
        }
        // Cut the inline blocks out of the served shell and hash them independently of
        // `csp_hash`: the browser allows a block only if its hash is in the policy.
        let csp = b.csp.to_str().unwrap();
        for (open, close, directive) in
            [("<script>", "</script>", "script-src"), ("<style>", "</style>", "style-src")]
        {
            let blocks: Vec<&str> =
                b.index.split(open).skip(1).map(|rest| rest.split(close).next().unwrap()).collect();
            assert_eq!(blocks.len(), 1, "one inline {open} block");
            let digest = Sha256::digest(blocks[0].as_bytes());
            let b64 = {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(digest)
            };
            let allowed = csp.split(';').find(|d| d.trim().starts_with(directive)).unwrap();
            assert!(
                allowed.contains(&format!("'sha256-{b64}'")),
                "{directive} does not allow the inline block: {allowed}"
            );
            assert!(!allowed.contains("unsafe-inline"));
        }
        assert!(BOOT.contains("globalThis.anomalydBoot") && STYLE.contains("body"));
    }

    #[test]
    fn the_shell_names_the_current_version_and_every_script_exists() {
        let b = &*BUILD;
        assert!(b.index.contains(&format!("{ASSET_PREFIX}/{}/app.js", b.version)));
        // Every relative import of every module names an embedded file.
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.body).unwrap();
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            // Static imports open a line; dynamic ones are `import('…')` anywhere.
            let statics = text
                .lines()
                .filter(|l| l.starts_with("import "))
                .map(|l| l.split(['\'', '"']).nth(1).unwrap());
            let dynamics = text.split("import('").skip(1).map(|rest| rest.split('\'').next().unwrap());
            for spec in statics.chain(dynamics) {
                let mut parts: Vec<&str> = if dir.is_empty() { vec![] } else { dir.split('/').collect() };
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(ASSETS.iter().any(|x| x.path == target), "{}: imports missing `{spec}`", a.path);
            }
        }
    }
}
