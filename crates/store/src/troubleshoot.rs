//! Cached troubleshooting answers, keyed by the problem (signature and model version) rather
//! than by the anomaly, so an LLM is asked once per kind of problem and model, not once per
//! anomaly.

use sha2::{Digest, Sha256};

use crate::{Result, Store};

/// The cache key of a problem: hex SHA-256 of `signature + "\n" + model_version` (an
/// anomaly without a model version hashes an empty one).
pub fn troubleshoot_cache_key(signature: &str, model_version: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(signature.as_bytes());
    h.update(b"\n");
    h.update(model_version.unwrap_or_default().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A troubleshooting answer as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    /// [`troubleshoot_cache_key`] of `signature` and `model_version`.
    pub cache_key: String,
    /// The anomaly signature it answers.
    pub signature: String,
    /// Version of the model that scored the anomaly.
    pub model_version: Option<String>,
    /// The LLM that wrote it.
    pub llm_model: String,
    /// One or two sentences on the likely cause.
    pub summary: String,
    /// What to do, in order.
    pub steps: Vec<String>,
    /// Written, Unix ms.
    pub created_at: i64,
    /// Ignored from this time on, Unix ms.
    pub expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    cache_key: String,
    signature: String,
    model_version: Option<String>,
    llm_model: String,
    summary: String,
    steps: String,
    created_at: i64,
    expires_at: i64,
}

impl Store {
    /// The cached answer under `key` written by `llm_model`, unless it has expired by `now_ms`.
    /// An answer of another LLM counts as absent, so changing the configured model does not
    /// keep serving the old model's answers until they expire.
    pub async fn cached_troubleshoot(
        &self,
        key: &str,
        llm_model: &str,
        now_ms: i64,
    ) -> Result<Option<CachedAnswer>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT * FROM troubleshoot_cache WHERE cache_key = ? AND llm_model = ? AND expires_at > ?",
        )
        .bind(key)
        .bind(llm_model)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| CachedAnswer {
            cache_key: r.cache_key,
            signature: r.signature,
            model_version: r.model_version,
            llm_model: r.llm_model,
            summary: r.summary,
            // Written by `put_troubleshoot` only; an unreadable list is an empty one.
            steps: serde_json::from_str(&r.steps).unwrap_or_default(),
            created_at: r.created_at,
            expires_at: r.expires_at,
        }))
    }

    /// Stores `answer`, replacing whatever its key held, and drops answers that expired
    /// before `answer.created_at` (so keys never asked again do not pile up).
    pub async fn put_troubleshoot(&self, answer: &CachedAnswer) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM troubleshoot_cache WHERE expires_at <= ?")
            .bind(answer.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO troubleshoot_cache
                 (cache_key, signature, model_version, llm_model, summary, steps, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (cache_key) DO UPDATE SET
                 signature = excluded.signature, model_version = excluded.model_version,
                 llm_model = excluded.llm_model, summary = excluded.summary, steps = excluded.steps,
                 created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(&answer.cache_key)
        .bind(&answer.signature)
        .bind(&answer.model_version)
        .bind(&answer.llm_model)
        .bind(&answer.summary)
        .bind(serde_json::to_string(&answer.steps).expect("strings serialise"))
        .bind(answer.created_at)
        .bind(answer.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The signature of an anomaly: kept on its incident (every stored anomaly joins one).
    /// `None` when the anomaly has no incident.
    pub async fn anomaly_signature(&self, anomaly_id: i64) -> Result<Option<String>> {
        let sig = sqlx::query_scalar(
            "SELECT i.signature FROM anomalies a JOIN incidents i ON i.id = a.incident_id WHERE a.id = ?",
        )
        .bind(anomaly_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_signatures_and_model_versions() {
        let k = troubleshoot_cache_key("battery_overheat|battery_temp_c", Some("v1/global"));
        assert_eq!(k.len(), 64);
        assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(k, troubleshoot_cache_key("battery_overheat|battery_temp_c", Some("v1/global")));
        assert_ne!(k, troubleshoot_cache_key("battery_overheat|battery_temp_c", Some("v2/global")));
        assert_ne!(k, troubleshoot_cache_key("crash_storm|app_crashes", Some("v1/global")));
        assert_eq!(troubleshoot_cache_key("s", None), troubleshoot_cache_key("s", Some("")));
    }
}
