//! Incidents: anomalies of one device with one signature, grouped while they keep coming.
//!
//! An anomaly joins the newest unresolved incident with the same `incident_key` when it
//! falls within the dedup window of that incident's last anomaly; otherwise it opens a new
//! incident, and the evidence (feature values, explanation, the last raw samples of the
//! metrics involved) is copied into it then, so later retention or edits cannot change what
//! the operator sees. The lookup goes through a partial index over unresolved incidents, so
//! its cost does not grow with history, and nothing is held in memory.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::anomalies::{AnomalyStatus, NewAnomaly, Page};
use crate::cursor::Cursor;
use crate::error::StoreError;
use crate::unmoved::Unmoved;
use crate::{Result, Store};

/// How anomalies are grouped into incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupPolicy {
    /// An anomaly within this many ms of an open incident's last anomaly joins it.
    pub window_ms: i64,
    /// Raw samples copied into a new incident's evidence.
    pub evidence_samples: u32,
}

impl Default for DedupPolicy {
    fn default() -> Self {
        Self { window_ms: 6 * 3_600_000, evidence_samples: 12 }
    }
}

/// The stable key of a (device, signature) pair: the device id and the first 16 hex digits
/// of the signature's SHA-256.
pub fn incident_key(device_id: &str, signature: &str) -> String {
    let digest = Sha256::digest(signature.as_bytes());
    let mut key = String::with_capacity(device_id.len() + 17);
    key.push_str(device_id);
    key.push(':');
    for b in &digest[..8] {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

/// Order of severities, lowest 0.
pub(crate) fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 3,
        "high" => 2,
        "medium" => 1,
        _ => 0,
    }
}

/// A stored incident.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct IncidentRecord {
    /// Id.
    pub id: i64,
    /// Device + signature hash; the same for every incident of this kind on this device.
    pub incident_key: String,
    /// Device.
    pub device_id: String,
    /// Top features and detectors that define it.
    pub signature: String,
    /// open / acknowledged / resolved.
    pub status: String,
    /// Highest severity of its anomalies.
    pub severity: String,
    /// Sample time of the first anomaly, Unix ms.
    pub opened_at: i64,
    /// Sample time of the latest anomaly, Unix ms.
    pub last_seen: i64,
    /// Anomalies grouped.
    pub anomaly_count: i64,
    /// Evidence snapshot (JSON text).
    pub evidence: String,
}

/// Puts a freshly inserted anomaly into its incident; returns (incident id, opened).
pub(crate) async fn attach_to_incident(
    conn: &mut SqliteConnection,
    unmoved: &Unmoved,
    anomaly_id: i64,
    a: &NewAnomaly,
    policy: &DedupPolicy,
) -> Result<(i64, bool)> {
    let key = incident_key(&a.device_id, &a.signature);
    let open: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT id, last_seen, severity FROM incidents
         WHERE incident_key = ? AND status != 'resolved' ORDER BY id DESC LIMIT 1",
    )
    .bind(&key)
    .fetch_optional(&mut *conn)
    .await?;
    let (incident, opened) = match open {
        Some((id, last_seen, severity)) if (a.ts - last_seen).abs() <= policy.window_ms => {
            let severity = if severity_rank(&a.severity) > severity_rank(&severity) {
                a.severity.as_str()
            } else {
                &severity
            };
            sqlx::query(
                "UPDATE incidents SET last_seen = MAX(last_seen, ?), anomaly_count = anomaly_count + 1,
                        severity = ? WHERE id = ?",
            )
            .bind(a.ts)
            .bind(severity)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            (id, false)
        }
        _ => {
            let evidence = evidence(conn, unmoved, anomaly_id, a, policy).await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO incidents (incident_key, device_id, signature, severity, opened_at, last_seen, evidence)
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(&key)
            .bind(&a.device_id)
            .bind(&a.signature)
            .bind(&a.severity)
            .bind(a.ts)
            .bind(a.ts)
            .bind(evidence.to_string())
            .fetch_one(&mut *conn)
            .await?;
            (id, true)
        }
    };
    sqlx::query("UPDATE anomalies SET incident_id = ? WHERE id = ?")
        .bind(incident)
        .bind(anomaly_id)
        .execute(&mut *conn)
        .await?;
    Ok((incident, opened))
}

/// The snapshot kept with a new incident. The sample that raised the anomaly was written
/// earlier in the same transaction (or an earlier one), so it is among the samples read.
async fn evidence(
    conn: &mut SqliteConnection,
    unmoved: &Unmoved,
    anomaly_id: i64,
    a: &NewAnomaly,
    policy: &DedupPolicy,
) -> Result<serde_json::Value> {
    let rows =
        crate::devices::latest_samples(conn, unmoved, &a.device_id, a.ts, policy.evidence_samples).await?;
    let samples: Vec<serde_json::Value> = rows
        .into_iter()
        .rev()
        .map(|crate::TelemetryRecord { ts, metrics }| {
            let all: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&metrics).unwrap_or_default();
            let kept: serde_json::Map<String, serde_json::Value> = if a.evidence_metrics.is_empty() {
                all
            } else {
                all.into_iter().filter(|(k, _)| a.evidence_metrics.iter().any(|m| m == k)).collect()
            };
            serde_json::json!({"ts": ts, "metrics": kept})
        })
        .collect();
    Ok(serde_json::json!({
        "anomaly_id": anomaly_id,
        "ts": a.ts,
        "anomaly_score": a.anomaly_score,
        "severity": a.severity,
        "detectors": a.detectors,
        "model_version": a.model_version,
        "features": a.features,
        "explanation": a.explanation,
        "metrics": a.evidence_metrics,
        "recent_samples": samples,
    }))
}

/// Filters of the incident list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only this status.
    pub status: Option<AnomalyStatus>,
    /// Only this device.
    pub device_id: Option<String>,
}

impl Store {
    /// One page of incidents, newest first.
    pub async fn list_incidents(
        &self,
        filter: &IncidentFilter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<IncidentRecord>> {
        let limit = limit.clamp(1, 1000);
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM incidents WHERE 1 = 1");
        if let Some(s) = filter.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(d) = &filter.device_id {
            q.push(" AND device_id = ").push_bind(d.clone());
        }
        crate::cursor::push_id_after(&mut q, cursor)?;
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let items: Vec<IncidentRecord> = q.build_query_as().fetch_all(self.pool()).await?;
        Ok(crate::cursor::id_page(items, limit, |r| r.id))
    }

    /// One incident.
    pub async fn incident(&self, id: i64) -> Result<IncidentRecord> {
        sqlx::query_as("SELECT * FROM incidents WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound { what: "incident", id: id.to_string() })
    }

    /// Ids of the incident's latest anomalies, newest first.
    pub async fn incident_anomaly_ids(&self, id: i64, limit: u32) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM anomalies WHERE incident_id = ? ORDER BY id DESC LIMIT ?")
            .bind(id)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(self.pool())
            .await?)
    }

    /// Acknowledges, resolves or reopens an incident.
    pub async fn set_incident_status(&self, id: i64, status: AnomalyStatus) -> Result<IncidentRecord> {
        let done = sqlx::query("UPDATE incidents SET status = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "incident", id: id.to_string() });
        }
        self.incident(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_separate_devices_and_signatures() {
        let k = incident_key("dev-1", "flat_line|battery_temp_c");
        assert_eq!(k, incident_key("dev-1", "flat_line|battery_temp_c"));
        assert!(k.starts_with("dev-1:") && k.len() == "dev-1:".len() + 16);
        assert_ne!(k, incident_key("dev-2", "flat_line|battery_temp_c"));
        assert_ne!(k, incident_key("dev-1", "model|battery_temp_c"));
        // SHA-256("abc") starts with ba7816bf8f01cfea (FIPS 180-2, appendix B.1).
        assert_eq!(incident_key("d", "abc"), "d:ba7816bf8f01cfea");
    }
}
