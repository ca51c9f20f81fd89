//! Trained bundles: stored with their parameters and metrics; exactly one may be active.

use serde::Serialize;

use crate::error::StoreError;
use crate::{Result, Store};

/// A bundle to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    /// Unique version label.
    pub version: String,
    /// Training parameters (JSON object).
    pub params: serde_json::Value,
    /// Training metrics (JSON object).
    pub metrics: serde_json::Value,
    /// The serialised bundle.
    pub blob: Vec<u8>,
}

/// A stored model without its blob.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ModelRecord {
    /// Id.
    pub id: i64,
    /// Version label.
    pub version: String,
    /// Parameters (JSON text).
    pub params: String,
    /// Metrics (JSON text).
    pub metrics: String,
    /// Whether it scores new telemetry.
    pub active: bool,
    /// Size of the blob in bytes.
    pub size_bytes: i64,
    /// Created, Unix ms.
    pub created_at: i64,
}

const COLUMNS: &str = "id, version, params, metrics, active, length(blob) AS size_bytes, created_at";

impl Store {
    /// Stores a model (inactive); returns its id.
    pub async fn insert_model(&self, m: &NewModel, now_ms: i64) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO models (version, params, metrics, blob, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&m.version)
        .bind(m.params.to_string())
        .bind(m.metrics.to_string())
        .bind(&m.blob)
        .bind(now_ms)
        .fetch_one(self.pool())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Invalid(format!("a model with version `{}` exists", m.version))
            }
            _ => StoreError::from(e),
        })?;
        Ok(id)
    }

    /// All models, newest first (a deployment keeps a handful).
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM models ORDER BY id DESC LIMIT 1000"))
            .fetch_all(self.pool())
            .await?)
    }

    /// One model and its blob.
    pub async fn model(&self, id: i64) -> Result<(ModelRecord, Vec<u8>)> {
        let record: ModelRecord = sqlx::query_as(&format!("SELECT {COLUMNS} FROM models WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound { what: "model", id: id.to_string() })?;
        let blob = sqlx::query_scalar("SELECT blob FROM models WHERE id = ?")
            .bind(id)
            .fetch_one(self.pool())
            .await?;
        Ok((record, blob))
    }

    /// The active model and its blob, if any.
    pub async fn active_model(&self) -> Result<Option<(ModelRecord, Vec<u8>)>> {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM models WHERE active = 1").fetch_optional(self.pool()).await?;
        match id {
            Some(id) => Ok(Some(self.model(id).await?)),
            None => Ok(None),
        }
    }

    /// Makes `id` the one active model.
    pub async fn activate_model(&self, id: i64) -> Result<ModelRecord> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE models SET active = 0 WHERE active = 1 AND id != ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done =
            sqlx::query("UPDATE models SET active = 1 WHERE id = ?").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "model", id: id.to_string() });
        }
        tx.commit().await?;
        Ok(self.model(id).await?.0)
    }

    /// Stored telemetry with sample time in [from, to), in (device, time) order, with each
    /// device's cohort and labels, handed to `each` row by row (nothing is collected here).
    pub async fn for_each_telemetry(
        &self,
        from_ms: i64,
        to_ms: i64,
        mut each: impl FnMut(TrainingRow),
    ) -> Result<u64> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query_as::<_, TrainingRow>(
            "SELECT t.device_id, t.ts, t.metrics, d.cohort, d.labels FROM telemetry t
             JOIN devices d ON d.id = t.device_id WHERE t.ts >= ? AND t.ts < ? ORDER BY t.device_id, t.ts",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch(self.pool());
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            each(row);
            n += 1;
        }
        Ok(n)
    }

    /// Samples stored with time in [from, to), for progress reporting (a scan, cheap next to
    /// the training that follows it).
    pub async fn count_telemetry(&self, from_ms: i64, to_ms: i64) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM telemetry WHERE ts >= ? AND ts < ?")
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one(self.pool())
            .await?)
    }
}

/// One stored sample with its device's attributes, as training reads it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TrainingRow {
    /// Device.
    pub device_id: String,
    /// Unix ms.
    pub ts: i64,
    /// Metrics (JSON object text).
    pub metrics: String,
    /// Device cohort.
    pub cohort: Option<String>,
    /// Device labels (JSON object text).
    pub labels: String,
}
