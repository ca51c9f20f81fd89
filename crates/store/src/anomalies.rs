//! Anomalies: insert, keyset-paginated lists with indexed filters, detail, status changes.

use std::fmt;

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::cursor::Cursor;
use crate::error::StoreError;
use crate::{Result, Store};

/// Life cycle of an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyStatus {
    /// New.
    Open,
    /// Seen by an operator.
    Acknowledged,
    /// Dealt with.
    Resolved,
}

impl AnomalyStatus {
    /// Name as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyStatus::Open => "open",
            AnomalyStatus::Acknowledged => "acknowledged",
            AnomalyStatus::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AnomalyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AnomalyStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "open" => Ok(AnomalyStatus::Open),
            "acknowledged" => Ok(AnomalyStatus::Acknowledged),
            "resolved" => Ok(AnomalyStatus::Resolved),
            other => {
                Err(StoreError::Invalid(format!("unknown status `{other}` (open, acknowledged, resolved)")))
            }
        }
    }
}

/// An anomaly to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnomaly {
    /// Device.
    pub device_id: String,
    /// Sample time, Unix ms.
    pub ts: i64,
    /// Cohort of the device.
    pub cohort: Option<String>,
    /// Anomaly score.
    pub anomaly_score: f64,
    /// Grade in [0, 1].
    pub grade: f64,
    /// low / medium / high / critical.
    pub severity: String,
    /// Detectors that fired.
    pub detectors: Vec<String>,
    /// Model that scored it.
    pub model_version: Option<String>,
    /// Feature values (JSON object).
    pub features: serde_json::Value,
    /// Explanation (JSON array).
    pub explanation: serde_json::Value,
    /// What makes two anomalies "the same problem": top features and detectors, as text.
    pub signature: String,
    /// Metrics whose raw samples go into a new incident's evidence.
    pub evidence_metrics: Vec<String>,
}

/// A stored anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AnomalyRecord {
    /// Id.
    pub id: i64,
    /// Device.
    pub device_id: String,
    /// Sample time, Unix ms.
    pub ts: i64,
    /// Cohort.
    pub cohort: Option<String>,
    /// Anomaly score.
    pub anomaly_score: f64,
    /// Grade.
    pub grade: f64,
    /// Severity.
    pub severity: String,
    /// Detectors (JSON array text).
    pub detectors: String,
    /// Model version.
    pub model_version: Option<String>,
    /// Status.
    pub status: String,
    /// Operator note.
    pub note: Option<String>,
    /// Incident it belongs to.
    pub incident_id: Option<i64>,
    /// Feature values (JSON text).
    pub features: String,
    /// Explanation (JSON text).
    pub explanation: String,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

/// Sort order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnomalySort {
    /// Newest sample time first.
    #[default]
    Newest,
    /// Highest score first.
    Score,
}

/// Filters of a list; every one is served by an index.
#[derive(Debug, Clone, Default)]
pub struct AnomalyFilter {
    /// Only this device.
    pub device_id: Option<String>,
    /// Only this cohort.
    pub cohort: Option<String>,
    /// Only this status.
    pub status: Option<AnomalyStatus>,
    /// Only this severity.
    pub severity: Option<String>,
    /// Sample time ≥ this (Unix ms).
    pub from_ts: Option<i64>,
    /// Sample time < this (Unix ms).
    pub to_ts: Option<i64>,
    /// Score ≥ this.
    pub min_score: Option<f64>,
    /// Order.
    pub sort: AnomalySort,
}

/// One page of a keyset-paginated list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// Rows.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Inserts an anomaly unless its sample already has one; returns the new id.
pub(crate) async fn insert_anomaly(
    conn: &mut SqliteConnection,
    a: &NewAnomaly,
    now_ms: i64,
) -> Result<Option<i64>> {
    let id = sqlx::query_scalar(
        "INSERT INTO anomalies (device_id, ts, cohort, anomaly_score, grade, severity, detectors, model_version,
                                features, explanation, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (device_id, ts) DO NOTHING RETURNING id",
    )
    .bind(&a.device_id)
    .bind(a.ts)
    .bind(&a.cohort)
    .bind(a.anomaly_score)
    .bind(a.grade)
    .bind(&a.severity)
    .bind(serde_json::to_string(&a.detectors).expect("strings serialise"))
    .bind(&a.model_version)
    .bind(a.features.to_string())
    .bind(a.explanation.to_string())
    .bind(now_ms)
    .bind(now_ms)
    .fetch_optional(conn)
    .await?;
    Ok(id)
}

impl Store {
    /// One page of anomalies matching `filter`, after `cursor`.
    pub async fn list_anomalies(
        &self,
        filter: &AnomalyFilter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<AnomalyRecord>> {
        let limit = limit.clamp(1, 1000);
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM anomalies WHERE 1 = 1");
        if let Some(d) = &filter.device_id {
            q.push(" AND device_id = ").push_bind(d.clone());
        }
        if let Some(c) = &filter.cohort {
            q.push(" AND cohort = ").push_bind(c.clone());
        }
        if let Some(s) = filter.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(s) = &filter.severity {
            q.push(" AND severity = ").push_bind(s.clone());
        }
        if let Some(t) = filter.from_ts {
            q.push(" AND ts >= ").push_bind(t);
        }
        if let Some(t) = filter.to_ts {
            q.push(" AND ts < ").push_bind(t);
        }
        if let Some(m) = filter.min_score {
            // Newest first walks a time-ordered index and skips low scores ("+" keeps SQLite
            // from range-scanning the score index and sorting every match by time).
            q.push(match filter.sort {
                AnomalySort::Newest => " AND +anomaly_score >= ",
                AnomalySort::Score => " AND anomaly_score >= ",
            })
            .push_bind(m);
        }
        match (filter.sort, cursor) {
            (AnomalySort::Newest, Some(Cursor::Time(ts, id))) => {
                q.push(" AND (ts, id) < (").push_bind(ts).push(", ").push_bind(id).push(")");
            }
            (AnomalySort::Score, Some(Cursor::Score(s, id))) => {
                q.push(" AND (anomaly_score < ").push_bind(s);
                q.push(" OR (anomaly_score = ").push_bind(s).push(" AND id < ").push_bind(id).push("))");
            }
            (_, Some(c)) => return Err(StoreError::BadCursor(format!("{c} does not fit this sort order"))),
            (_, None) => {}
        }
        q.push(match filter.sort {
            AnomalySort::Newest => " ORDER BY ts DESC, id DESC",
            AnomalySort::Score => " ORDER BY anomaly_score DESC, id DESC",
        });
        // One row more than asked tells whether another page exists, without counting.
        q.push(" LIMIT ").push_bind(i64::from(limit) + 1);
        let mut items: Vec<AnomalyRecord> = q.build_query_as().fetch_all(self.pool()).await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            let last = items.last().expect("limit ≥ 1");
            Some(match filter.sort {
                AnomalySort::Newest => Cursor::Time(last.ts, last.id),
                AnomalySort::Score => Cursor::Score(last.anomaly_score, last.id),
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor: next_cursor.map(|c| c.to_string()) })
    }

    /// One anomaly.
    pub async fn anomaly(&self, id: i64) -> Result<AnomalyRecord> {
        sqlx::query_as("SELECT * FROM anomalies WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound { what: "anomaly", id: id.to_string() })
    }

    /// Acknowledges, resolves or reopens an anomaly, with an optional note.
    pub async fn set_anomaly_status(
        &self,
        id: i64,
        status: AnomalyStatus,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<AnomalyRecord> {
        let done = sqlx::query(
            "UPDATE anomalies SET status = ?, note = COALESCE(?, note), updated_at = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(note)
        .bind(now_ms)
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "anomaly", id: id.to_string() });
        }
        self.anomaly(id).await
    }
}
