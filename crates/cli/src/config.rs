//! Server settings, merged from four layers: built-in defaults < TOML file < `ANOMALYD_*`
//! environment < command-line flags. `anomalyd config show` prints the merged result with
//! the layer each value came from.
//!
//! The file is `--config FILE`, else `$ANOMALYD_CONFIG`, else `./anomalyd.toml` when it
//! exists. Every key has an environment variable: top-level keys as `ANOMALYD_<KEY>`
//! (`ANOMALYD_LISTEN`), keys of a section as `ANOMALYD_<SECTION>_<KEY>`
//! (`ANOMALYD_INGEST_QUEUE_SAMPLES`), values written as in TOML.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anomalyd_engine::fleet::FleetConfig;
use anomalyd_service::ServiceSettings;
use anomalyd_service::pipeline::PipelineSettings;
use anomalyd_service::troubleshoot::TroubleshootSettings;
use anomalyd_service::troubleshoot::rules::{TroubleshootRule, builtin_rules};
use anomalyd_store::{DedupPolicy, StoreOptions};
use serde::{Deserialize, Serialize};

use crate::input::InputError;

/// The merged settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the server listens on.
    pub listen: String,
    /// Directory of the default SQLite database.
    pub data_dir: PathBuf,
    /// Database URL; overrides `data_dir` (`sqlite://PATH`).
    pub database_url: String,
    /// Fleet feature configuration (TOML) used for training; empty: the built-in one.
    pub fleet_config: String,
    /// Ingest pipeline.
    pub ingest: IngestSettings,
    /// Incident grouping.
    pub incidents: IncidentSettings,
    /// Connection pool.
    pub database: DatabaseSettings,
    /// API keys.
    pub auth: AuthConfig,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Troubleshooting answers (LLM endpoint, cache, rules).
    pub troubleshoot: TroubleshootConfig,
    /// Webhook delivery.
    pub webhooks: WebhooksConfig,
}

/// `[webhooks]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// Milliseconds one attempt may take.
    pub timeout_ms: u64,
    /// Milliseconds of backoff before the second attempt (doubling after each attempt).
    pub backoff_base_ms: u64,
    /// Longest wait between attempts in milliseconds, `Retry-After` included.
    pub backoff_max_ms: u64,
    /// Milliseconds between looks at the outbox for work nobody announced.
    pub poll_interval_ms: u64,
    /// Attempts in flight at once (0: this process delivers nothing).
    pub concurrency: usize,
    /// Dashboard URL used in alert links; empty: `http://` + the listen address.
    pub public_url: String,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let w = anomalyd_service::webhooks::WebhookSettings::default();
        Self {
            max_attempts: w.max_attempts,
            timeout_ms: w.timeout.as_millis() as u64,
            backoff_base_ms: w.backoff_base.as_millis() as u64,
            backoff_max_ms: w.backoff_max.as_millis() as u64,
            poll_interval_ms: w.poll_interval.as_millis() as u64,
            concurrency: w.concurrency,
            public_url: String::new(),
        }
    }
}

/// `[troubleshoot]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TroubleshootConfig {
    /// Base URL of an OpenAI-compatible API (`https://…/v1`); empty: answers from the rules
    /// table only.
    pub endpoint: String,
    /// Model name sent to the endpoint.
    pub model: String,
    /// Bearer key of the endpoint (better set as `ANOMALYD_TROUBLESHOOT_API_KEY`); never shown.
    pub api_key: Secret,
    /// Milliseconds allowed for one attempt.
    pub timeout_ms: u64,
    /// Attempts after the first, on timeouts, 5xx and 429.
    pub retries: u32,
    /// Milliseconds before the first retry, doubled for each further one.
    pub backoff_ms: u64,
    /// Seconds an LLM answer is served from the cache.
    pub cache_ttl_secs: u64,
    /// Use the built-in rules table (config/troubleshoot.toml) after `rules`.
    pub builtin_rules: bool,
    /// Rules checked before the built-in ones: `{ metric = "…", direction = "above" | "below"
    /// | "any", summary = "…", steps = ["…"] }`, or `detector = "…"` instead of the metric.
    pub rules: Vec<TroubleshootRule>,
}

impl Default for TroubleshootConfig {
    fn default() -> Self {
        let t = TroubleshootSettings::default();
        Self {
            endpoint: String::new(),
            model: t.model,
            api_key: Secret::default(),
            timeout_ms: t.timeout.as_millis() as u64,
            retries: t.retries,
            backoff_ms: t.backoff.as_millis() as u64,
            cache_ttl_secs: t.cache_ttl.as_secs(),
            builtin_rules: true,
            rules: Vec::new(),
        }
    }
}

/// A setting that must not be shown: `Debug` and `config show` mask it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"********\"" })
    }
}

/// Settings keys whose values `config show` masks.
const SECRET_KEYS: &[&str] = &["troubleshoot.api_key"];

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Requests served at once; more get 503 with Retry-After.
    pub max_in_flight: usize,
    /// Sustained requests per second per API key (0: unlimited); over it, 429.
    pub rate_per_sec: u32,
    /// Burst above the sustained rate.
    pub rate_burst: u32,
    /// Origins allowed by CORS (`*` for any).
    pub cors_origins: Vec<String>,
    /// Milliseconds a request may take (then 408).
    pub request_timeout_ms: u64,
    /// Milliseconds SIGINT/SIGTERM waits for in-flight requests and the ingest queue.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let h = anomalyd_service::middleware::HttpSettings::default();
        Self {
            max_in_flight: h.max_in_flight,
            rate_per_sec: h.rate_per_sec,
            rate_burst: h.rate_burst,
            cors_origins: h.cors_origins,
            request_timeout_ms: h.request_timeout.as_millis() as u64,
            shutdown_grace_ms: h.shutdown_grace.as_millis() as u64,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Paths served without a key.
    pub public_paths: Vec<String>,
    /// Milliseconds a key lookup is reused (how long a revoked key may still pass).
    pub key_cache_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let a = anomalyd_service::auth::AuthSettings::default();
        Self { public_paths: a.public_paths, key_cache_ms: a.cache_ttl.as_millis() as u64 }
    }
}

/// `[ingest]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Most samples waiting in the queue; beyond it requests get 503.
    pub queue_samples: usize,
    /// Most samples written in one transaction.
    pub batch_samples: usize,
    /// Samples a device sends before the model may flag it.
    pub warmup: usize,
    /// Milliseconds a held-back (re-ordered) sample waits before it is scored anyway.
    pub flush_after_ms: u64,
}

/// `[incidents]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentSettings {
    /// An anomaly within this many seconds of an open incident with its signature joins it.
    pub dedup_window_secs: u64,
    /// Raw samples copied into a new incident's evidence.
    pub evidence_samples: u32,
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Most pooled connections.
    pub max_connections: u32,
    /// Milliseconds a request may wait for a connection.
    pub acquire_timeout_ms: u64,
    /// Milliseconds SQLite waits on a lock.
    pub busy_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: "./anomalyd-data".into(),
            database_url: String::new(),
            fleet_config: String::new(),
            ingest: IngestSettings::default(),
            incidents: IncidentSettings::default(),
            database: DatabaseSettings::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            troubleshoot: TroubleshootConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        let p = PipelineSettings::default();
        Self {
            queue_samples: p.queue_samples,
            batch_samples: p.batch_samples,
            warmup: p.warmup,
            flush_after_ms: p.flush_after.as_millis() as u64,
        }
    }
}

impl Default for IncidentSettings {
    fn default() -> Self {
        let d = DedupPolicy::default();
        Self { dedup_window_secs: (d.window_ms / 1000) as u64, evidence_samples: d.evidence_samples }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        let o = StoreOptions::default();
        Self {
            max_connections: o.max_connections,
            acquire_timeout_ms: o.acquire_timeout.as_millis() as u64,
            busy_timeout_ms: o.busy_timeout.as_millis() as u64,
        }
    }
}

/// Flags that override the file and the environment (shared by `serve`, `demo` and
/// `config show`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerFlags {
    /// Settings file (TOML) [env: ANOMALYD_CONFIG; default: ./anomalyd.toml if present].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on [env: ANOMALYD_LISTEN; default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory of the default SQLite database [env: ANOMALYD_DATA_DIR; default: ./anomalyd-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Database URL (sqlite://PATH); overrides --data-dir [env: ANOMALYD_DATABASE_URL].
    #[arg(long)]
    pub database_url: Option<String>,
    /// OpenAI-compatible API for troubleshooting answers (https://…/v1)
    /// [env: ANOMALYD_TROUBLESHOOT_ENDPOINT; default: none, answers from the rules table].
    #[arg(long)]
    pub troubleshoot_endpoint: Option<String>,
}

/// Where a value came from.
pub type Sources = BTreeMap<String, &'static str>;

/// Merges the four layers; `env` is the environment to read (the process's in production).
pub fn load(flags: &ServerFlags, env: &BTreeMap<String, String>) -> anyhow::Result<(Settings, Sources)> {
    let mut table = toml::Value::try_from(Settings::default()).expect("settings serialise");
    let mut sources: Sources = BTreeMap::new();
    for key in leaf_keys(&table) {
        sources.insert(key, "default");
    }
    let file = flags.config.clone().or_else(|| env.get("ANOMALYD_CONFIG").map(PathBuf::from)).or_else(|| {
        let p = PathBuf::from("anomalyd.toml");
        p.exists().then_some(p)
    });
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InputError(format!("{}: cannot read settings: {e}", path.display())))?;
        let from_file: toml::Value =
            toml::from_str(&text).map_err(|e| InputError(format!("{}: {e}", path.display())))?;
        for key in leaf_keys(&from_file) {
            sources.insert(key, "file");
        }
        merge(&mut table, from_file);
    }
    for key in leaf_keys(&table) {
        let var = format!("ANOMALYD_{}", key.replace('.', "_").to_uppercase());
        let Some(text) = env.get(&var) else { continue };
        let current = lookup(&table, &key).cloned();
        let value = match current {
            Some(toml::Value::String(_)) | None => toml::Value::String(text.clone()),
            Some(_) => toml::from_str::<BTreeMap<String, toml::Value>>(&format!("v = {text}"))
                .ok()
                .and_then(|mut m| m.remove("v"))
                .ok_or_else(|| InputError(format!("{var}=`{text}`: not a valid value for `{key}`")))?,
        };
        set(&mut table, &key, value);
        sources.insert(key, "env");
    }
    let mut flag = |key: &str, value: Option<toml::Value>| {
        if let Some(v) = value {
            set(&mut table, key, v);
            sources.insert(key.to_string(), "flag");
        }
    };
    flag("listen", flags.listen.clone().map(toml::Value::String));
    flag("data_dir", flags.data_dir.as_ref().map(|p| toml::Value::String(p.display().to_string())));
    flag("database_url", flags.database_url.clone().map(toml::Value::String));
    flag("troubleshoot.endpoint", flags.troubleshoot_endpoint.clone().map(toml::Value::String));
    let settings: Settings = table.try_into().map_err(|e: toml::de::Error| {
        InputError(format!(
            "invalid settings{}: {e}",
            file.as_deref().map(|p| format!(" (file {})", p.display())).unwrap_or_default()
        ))
    })?;
    settings.validate()?;
    Ok((settings, sources))
}

/// The process environment's `ANOMALYD_*` variables.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().filter(|(k, _)| k.starts_with("ANOMALYD_")).collect()
}

impl Settings {
    fn validate(&self) -> anyhow::Result<()> {
        let bad = |key: &str, why: &str| Err(InputError(format!("setting `{key}`: {why}")).into());
        if self.ingest.queue_samples < crate::commands::serve::MAX_REQUEST_SAMPLES {
            return bad(
                "ingest.queue_samples",
                &format!(
                    "must hold at least one full request ({})",
                    crate::commands::serve::MAX_REQUEST_SAMPLES
                ),
            );
        }
        if self.ingest.batch_samples == 0 {
            return bad("ingest.batch_samples", "must be at least 1");
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        let t = &self.troubleshoot;
        if !t.endpoint.is_empty()
            && let Err(e) = anomalyd_service::troubleshoot::parse_endpoint(&t.endpoint)
        {
            return bad("troubleshoot.endpoint", &e);
        }
        if t.model.is_empty() {
            return bad("troubleshoot.model", "must not be empty");
        }
        if t.timeout_ms == 0 {
            return bad("troubleshoot.timeout_ms", "must be at least 1");
        }
        if t.retries > 10 {
            return bad("troubleshoot.retries", "at most 10");
        }
        if t.cache_ttl_secs == 0 {
            return bad("troubleshoot.cache_ttl_secs", "must be at least 1");
        }
        for (i, r) in t.rules.iter().enumerate() {
            if let Err(e) = r.validate() {
                return bad(&format!("troubleshoot.rules[{i}]"), &e);
            }
        }
        if self.webhooks.max_attempts == 0 {
            return bad("webhooks.max_attempts", "must be at least 1");
        }
        for (key, ms) in [
            ("webhooks.timeout_ms", self.webhooks.timeout_ms),
            ("webhooks.poll_interval_ms", self.webhooks.poll_interval_ms),
        ] {
            if ms == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.webhooks.backoff_max_ms < self.webhooks.backoff_base_ms {
            return bad("webhooks.backoff_max_ms", "must be at least webhooks.backoff_base_ms");
        }
        let url = &self.webhooks.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return bad("webhooks.public_url", "must start with http:// or https://");
        }
        Ok(())
    }

    /// The database URL, creating the data directory for the default SQLite file.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if !self.database_url.is_empty() {
            if self.database_url.starts_with("postgres") {
                return Err(InputError(format!(
                    "{}: PostgreSQL is not supported by this build yet; use sqlite://PATH",
                    self.database_url
                ))
                .into());
            }
            return Ok(self.database_url.clone());
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            InputError(format!("{}: cannot create data directory: {e}", self.data_dir.display()))
        })?;
        Ok(format!("sqlite://{}", self.data_dir.join("anomalyd.db").display()))
    }

    /// Pool options.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.database.max_connections,
            acquire_timeout: Duration::from_millis(self.database.acquire_timeout_ms),
            busy_timeout: Duration::from_millis(self.database.busy_timeout_ms),
            background_checkpoint: false,
        }
    }

    /// The service's settings (reads the fleet configuration file, if one is named).
    pub fn service(&self) -> anyhow::Result<ServiceSettings> {
        let mut s = ServiceSettings::default();
        if !self.fleet_config.is_empty() {
            let path = Path::new(&self.fleet_config);
            let text = std::fs::read_to_string(path)
                .map_err(|e| InputError(format!("{}: cannot read fleet config: {e}", path.display())))?;
            s.fleet_config =
                FleetConfig::from_toml(&text).map_err(|e| InputError(format!("{}: {e}", path.display())))?;
        }
        s.pipeline = PipelineSettings {
            queue_samples: self.ingest.queue_samples,
            batch_samples: self.ingest.batch_samples,
            warmup: self.ingest.warmup,
            flush_after: Duration::from_millis(self.ingest.flush_after_ms),
            dedup: DedupPolicy {
                window_ms: i64::try_from(self.incidents.dedup_window_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
                evidence_samples: self.incidents.evidence_samples,
            },
        };
        s.auth = anomalyd_service::auth::AuthSettings {
            mode: anomalyd_service::auth::AuthMode::ApiKeys,
            public_paths: self.auth.public_paths.clone(),
            cache_ttl: Duration::from_millis(self.auth.key_cache_ms),
        };
        s.http = anomalyd_service::middleware::HttpSettings {
            max_in_flight: self.http.max_in_flight,
            rate_per_sec: self.http.rate_per_sec,
            rate_burst: self.http.rate_burst,
            cors_origins: self.http.cors_origins.clone(),
            request_timeout: Duration::from_millis(self.http.request_timeout_ms),
            shutdown_grace: Duration::from_millis(self.http.shutdown_grace_ms),
        };
        let t = &self.troubleshoot;
        let mut rules = t.rules.clone();
        if t.builtin_rules {
            rules.extend(builtin_rules());
        }
        s.troubleshoot = TroubleshootSettings {
            endpoint: if t.endpoint.is_empty() {
                None
            } else {
                Some(anomalyd_service::troubleshoot::parse_endpoint(&t.endpoint).map_err(InputError)?)
            },
            model: t.model.clone(),
            api_key: (!t.api_key.0.is_empty()).then(|| t.api_key.0.clone()),
            timeout: Duration::from_millis(t.timeout_ms),
            retries: t.retries,
            backoff: Duration::from_millis(t.backoff_ms),
            cache_ttl: Duration::from_secs(t.cache_ttl_secs),
            rules,
        };
        let w = &self.webhooks;
        s.webhooks = anomalyd_service::webhooks::WebhookSettings {
            max_attempts: w.max_attempts,
            timeout: Duration::from_millis(w.timeout_ms),
            backoff_base: Duration::from_millis(w.backoff_base_ms),
            backoff_max: Duration::from_millis(w.backoff_max_ms),
            poll_interval: Duration::from_millis(w.poll_interval_ms),
            concurrency: w.concurrency,
            public_url: if w.public_url.is_empty() {
                format!("http://{}", self.listen)
            } else {
                w.public_url.trim_end_matches('/').to_string()
            },
            jitter_seed: None,
        };
        Ok(s)
    }

    /// The merged settings as TOML, each value followed by the layer it came from.
    pub fn show(&self, sources: &Sources) -> String {
        let table = toml::Value::try_from(self).expect("settings serialise");
        let mut out = String::new();
        let mut section = String::new();
        for key in leaf_keys(&table) {
            let (sec, name) = key.rsplit_once('.').unwrap_or(("", key.as_str()));
            if sec != section {
                out.push_str(&format!("\n[{sec}]\n"));
                section = sec.to_string();
            }
            let value = lookup(&table, &key).expect("key from table");
            let source = sources.get(&key).copied().unwrap_or("default");
            if SECRET_KEYS.contains(&key.as_str()) && value.as_str().is_some_and(|v| !v.is_empty()) {
                out.push_str(&format!("{name} = \"********\"  # {source}, masked\n"));
                continue;
            }
            out.push_str(&format!("{name} = {value}  # {source}\n"));
        }
        out.trim_start().to_string()
    }
}

/// Dotted paths of the leaves, top-level keys first (TOML needs them before sections).
fn leaf_keys(v: &toml::Value) -> Vec<String> {
    let mut top = Vec::new();
    let mut nested = Vec::new();
    if let toml::Value::Table(t) = v {
        for (k, v) in t {
            match v {
                toml::Value::Table(inner) => {
                    nested.extend(inner.keys().map(|ik| format!("{k}.{ik}")));
                }
                _ => top.push(k.clone()),
            }
        }
    }
    top.extend(nested);
    top
}

fn lookup<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |v, part| v.get(part))
}

fn set(v: &mut toml::Value, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut cur = v;
    for p in parts {
        cur = cur
            .as_table_mut()
            .expect("settings are tables")
            .entry(p)
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    if let Some(t) = cur.as_table_mut() {
        t.insert(last.to_string(), value);
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:1\"\ndata_dir = \"/from/file\"\n[ingest]\nwarmup = 5\nqueue_samples = 50000\n",
        )
        .unwrap();
        let flags =
            ServerFlags { config: Some(file), listen: Some("127.0.0.1:9".into()), ..Default::default() };
        let (s, src) =
            load(&flags, &env(&[("ANOMALYD_LISTEN", "127.0.0.1:7"), ("ANOMALYD_INGEST_WARMUP", "9")]))
                .unwrap();
        assert_eq!(s.listen, "127.0.0.1:9");
        assert_eq!(src["listen"], "flag");
        assert_eq!(s.ingest.warmup, 9);
        assert_eq!(src["ingest.warmup"], "env");
        assert_eq!(s.ingest.queue_samples, 50_000);
        assert_eq!(src["ingest.queue_samples"], "file");
        assert_eq!(s.data_dir, PathBuf::from("/from/file"));
        assert_eq!(s.ingest.batch_samples, IngestSettings::default().batch_samples);
        assert_eq!(src["ingest.batch_samples"], "default");
        let shown = s.show(&src);
        assert!(shown.contains("listen = \"127.0.0.1:9\"  # flag"), "{shown}");
        assert!(shown.contains("[ingest]\n"), "{shown}");
        // What `show` prints parses back (comments included) to the same settings.
        let reparsed: Settings = toml::from_str(&shown).unwrap();
        assert_eq!(reparsed, s);
    }

    #[test]
    fn webhook_settings_layer_and_reach_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(
            &file,
            "listen = \"10.0.0.5:9000\"\n[webhooks]\nmax_attempts = 3\ntimeout_ms = 2500\n",
        )
        .unwrap();
        let flags = ServerFlags { config: Some(file), ..Default::default() };
        let (s, src) = load(&flags, &env(&[("ANOMALYD_WEBHOOKS_CONCURRENCY", "9")])).unwrap();
        assert_eq!((src["webhooks.max_attempts"], src["webhooks.concurrency"]), ("file", "env"));
        let shown = s.show(&src);
        let section = shown.split("[webhooks]\n").nth(1).expect("a [webhooks] section");
        assert!(section.contains("\nmax_attempts = 3  # file\n"), "{shown}");
        let w = s.service().unwrap().webhooks;
        assert_eq!((w.max_attempts, w.timeout, w.concurrency), (3, Duration::from_millis(2500), 9));
        assert_eq!(w.public_url, "http://10.0.0.5:9000", "the default link target is the listen address");
        let (s, _) = load(
            &ServerFlags::default(),
            &env(&[("ANOMALYD_WEBHOOKS_PUBLIC_URL", "https://anomalyd.example.com/")]),
        )
        .unwrap();
        assert_eq!(s.service().unwrap().webhooks.public_url, "https://anomalyd.example.com");
        for (var, value) in [
            ("ANOMALYD_WEBHOOKS_MAX_ATTEMPTS", "0"),
            ("ANOMALYD_WEBHOOKS_PUBLIC_URL", "anomalyd.example.com"),
            ("ANOMALYD_WEBHOOKS_BACKOFF_MAX_MS", "1"),
        ] {
            let e = load(&ServerFlags::default(), &env(&[(var, value)])).unwrap_err();
            assert!(e.to_string().contains("webhooks."), "{var}: {e}");
        }
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = load(&ServerFlags::default(), &env(&[("ANOMALYD_INGEST_WARMUP", "many")])).unwrap_err();
        assert!(e.to_string().contains("ANOMALYD_INGEST_WARMUP"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "[ingest]\nwarmpu = 3\n").unwrap();
        let e = load(&ServerFlags { config: Some(file), ..Default::default() }, &env(&[])).unwrap_err();
        assert!(e.to_string().contains("warmpu"), "{e}");
        let e = load(&ServerFlags::default(), &env(&[("ANOMALYD_INGEST_QUEUE_SAMPLES", "10")])).unwrap_err();
        assert!(e.to_string().contains("ingest.queue_samples"), "{e}");
    }

    #[test]
    fn troubleshoot_settings_layer_and_the_api_key_is_never_shown() {
        let flags =
            ServerFlags { troubleshoot_endpoint: Some("http://127.0.0.1:9/v1".into()), ..Default::default() };
        let vars = env(&[
            ("ANOMALYD_TROUBLESHOOT_API_KEY", "sk-very-secret"),
            ("ANOMALYD_TROUBLESHOOT_RETRIES", "1"),
        ]);
        let (s, src) = load(&flags, &vars).unwrap();
        assert_eq!(
            (s.troubleshoot.api_key.0.as_str(), src["troubleshoot.api_key"]),
            ("sk-very-secret", "env")
        );
        assert_eq!(src["troubleshoot.endpoint"], "flag");
        let shown = s.show(&src);
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("api_key = \"********\"  # env, masked"), "{shown}");
        assert!(!format!("{s:?}").contains("sk-very-secret"));
        let service = s.service().unwrap();
        assert!(!format!("{service:?}").contains("sk-very-secret"));
        let t = &service.troubleshoot;
        assert_eq!(t.api_key.as_deref(), Some("sk-very-secret"));
        assert_eq!(t.endpoint.as_ref().map(|u| u.as_str()), Some("http://127.0.0.1:9/v1"));
        assert_eq!(t.retries, 1);
        assert_eq!(t.rules, builtin_rules());

        // Rules from the file come first; the built-in ones can be left out.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(
            &file,
            "[troubleshoot]\nbuiltin_rules = false\n[[troubleshoot.rules]]\nmetric = \"cpu_pct\"\n\
             direction = \"above\"\nsummary = \"Busy.\"\nsteps = [\"Find the process.\"]\n",
        )
        .unwrap();
        let (s, src) =
            load(&ServerFlags { config: Some(file.clone()), ..Default::default() }, &env(&[])).unwrap();
        assert_eq!(src["troubleshoot.rules"], "file");
        let rules = s.service().unwrap().troubleshoot.rules;
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].steps, ["Find the process."]);
        let reparsed: Settings = toml::from_str(&s.show(&src)).unwrap();
        assert_eq!(reparsed, s);

        let e = load(
            &ServerFlags { troubleshoot_endpoint: Some("ftp://x".into()), ..Default::default() },
            &env(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("troubleshoot.endpoint"), "{e}");
        std::fs::write(&file, "[[troubleshoot.rules]]\nsummary = \"s\"\nsteps = [\"x\"]\n").unwrap();
        let e = load(&ServerFlags { config: Some(file), ..Default::default() }, &env(&[])).unwrap_err();
        assert!(e.to_string().contains("troubleshoot.rules[0]"), "{e}");
    }
}
