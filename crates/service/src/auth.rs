//! API keys and scopes.
//!
//! Requests carry `Authorization: Bearer <key>`. Every route declares the scope it needs
//! (see the route table in `lib.rs`): `read` for reads, `write` for ingest, scoring and
//! triage, `admin` for training and activating models. `admin` grants everything and `write`
//! grants `read`. Keys are looked up by their SHA-256 (only hashes are stored); a lookup is
//! cached for a few seconds so a busy key does not cost a query per request, which bounds
//! how long a revoked key keeps working.
//!
//! `AuthMode::Disabled` (the `--insecure-no-auth` mode, refused by the CLI on anything but
//! loopback) lets every request through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anomalyd_store::{ApiKeyRecord, hash_key};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;

use crate::AppState;
use crate::error::ApiError;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// No key needed (liveness and readiness probes, by default).
    Public,
    /// Read data.
    Read,
    /// Change data: ingest, score, triage.
    Write,
    /// Manage models.
    Admin,
}

impl Scope {
    /// Name as stored in a key and shown in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Parses a scope a key may hold.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// Whether keys are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every non-public route needs a key with the right scope.
    ApiKeys,
    /// No checks (loopback development only; the CLI enforces that).
    Disabled,
}

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Keys or none.
    pub mode: AuthMode,
    /// Paths served without a key (default `/healthz`, `/readyz`; add `/metrics` for a
    /// scraper without a key).
    pub public_paths: Vec<String>,
    /// How long a key lookup is reused (and so how long a revoked key may still pass).
    pub cache_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::ApiKeys,
            public_paths: vec!["/healthz".into(), "/readyz".into()],
            cache_ttl: Duration::from_secs(5),
        }
    }
}

impl AuthSettings {
    /// No authentication (tests, in-process embedding, `--insecure-no-auth`).
    pub fn disabled() -> Self {
        Self { mode: AuthMode::Disabled, ..Self::default() }
    }
}

/// A new random key: `adk_` and 64 hex digits (256 bits from the operating system's
/// generator, via rand's thread-local CSPRNG; keys must not be reproducible).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut key = String::from("adk_");
    for b in bytes {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

/// Whether a key holding `scopes` may use a route needing `needed`.
pub fn grants<'a>(scopes: impl IntoIterator<Item = &'a str>, needed: Scope) -> bool {
    scopes.into_iter().filter_map(Scope::parse).any(|have| match (have, needed) {
        (_, Scope::Public) | (Scope::Admin, _) => true,
        (Scope::Write, Scope::Read | Scope::Write) => true,
        (have, needed) => have == needed,
    })
}

/// Recent key lookups by hash (bounded: cleared when it grows past 10 000 entries).
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Option<ApiKeyRecord>, Instant)>>,
}

impl KeyCache {
    async fn lookup(&self, state: &AppState, key: &str) -> Result<Option<ApiKeyRecord>, ApiError> {
        let hash = hash_key(key);
        let ttl = state.settings.auth.cache_ttl;
        if let Some((record, at)) = self.entries.lock().expect("key cache").get(&hash)
            && at.elapsed() < ttl
        {
            return Ok(record.clone());
        }
        let record = state.store.api_key_by_hash(&hash).await?;
        let mut entries = self.entries.lock().expect("key cache");
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(hash, (record.clone(), Instant::now()));
        Ok(record)
    }
}

/// The key of an `Authorization: Bearer <key>` header, if there is a non-empty one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Middleware of one route: checks the bearer key against the route's scope.
pub async fn require(
    State((state, needed)): State<(AppState, Scope)>,
    request: Request,
    next: Next,
) -> Response {
    if state.settings.auth.mode == AuthMode::Disabled
        || needed == Scope::Public
        || state.settings.auth.public_paths.iter().any(|p| p == request.uri().path())
    {
        return next.run(request).await;
    }
    let Some(key) = bearer_token(request.headers()) else {
        return unauthorized(
            "send an API key as `Authorization: Bearer <key>` (create one with `anomalyd keys create`)",
        );
    };
    match state.keys.lookup(&state, key).await {
        Err(e) => e.into_response(),
        Ok(None) => unauthorized("unknown API key"),
        Ok(Some(record)) if record.revoked_at.is_some() => unauthorized("this API key was revoked"),
        Ok(Some(record)) if !grants(record.scope_list(), needed) => ApiError::forbidden(format!(
            "this route needs the `{}` scope; the key `{}` has `{}`",
            needed.as_str(),
            record.name,
            record.scopes
        ))
        .into_response(),
        Ok(Some(_)) => next.run(request).await,
    }
}

fn unauthorized(detail: &str) -> Response {
    let mut res = ApiError::unauthorized(detail).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_grant_what_they_name_and_below() {
        assert!(grants(["read"], Scope::Read));
        assert!(!grants(["read"], Scope::Write));
        assert!(grants(["write"], Scope::Read) && grants(["write"], Scope::Write));
        assert!(!grants(["write"], Scope::Admin));
        assert!(grants(["admin"], Scope::Write) && grants(["admin"], Scope::Admin));
        assert!(grants(["read", "admin"], Scope::Admin));
        assert!(!grants(["superuser"], Scope::Read));
        assert!(!grants(Vec::<&str>::new(), Scope::Read));
    }

    #[test]
    fn keys_are_random_and_well_formed() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with("adk_") && a.len() == 68 && a[4..].chars().all(|c| c.is_ascii_hexdigit()));
    }
}
