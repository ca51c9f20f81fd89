//! Devices: keyset list by id, detail with recent telemetry.

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::anomalies::Page;
use crate::error::StoreError;
use crate::{Result, Store};

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeviceRecord {
    /// Id.
    pub id: String,
    /// Latest cohort reported.
    pub cohort: Option<String>,
    /// Labels (JSON object text).
    pub labels: String,
    /// First sample, Unix ms.
    pub first_seen: i64,
    /// Latest sample, Unix ms.
    pub last_seen: i64,
}

/// One stored sample.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TelemetryRecord {
    /// Unix ms.
    pub ts: i64,
    /// Metrics (JSON object text).
    pub metrics: String,
}

/// The stored `last_seen` is only the time of the device's first batch (updating it on every
/// sample rewrote a device row per sample); the latest sample time is one seek in each of the
/// two per-device sample lists (see migration 0007).
const COLUMNS: &str = "id, cohort, labels, first_seen,
    COALESCE((SELECT MAX(ts) FROM (
        SELECT MAX(ts) AS ts FROM telemetry_device_recent WHERE device_id = devices.id
        UNION ALL SELECT MAX(ts) FROM telemetry_device WHERE device_id = devices.id)), last_seen) AS last_seen";

fn encode(id: &str) -> String {
    let mut s = String::with_capacity(1 + 2 * id.len());
    s.push('d');
    for b in id.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn decode(cursor: &str) -> Result<String> {
    let bad = || StoreError::BadCursor(cursor.chars().take(64).collect());
    let hex = cursor.strip_prefix('d').ok_or_else(bad)?;
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>>>()?;
    String::from_utf8(bytes).map_err(|_| bad())
}

impl Store {
    /// One page of devices ordered by id, optionally of one cohort.
    pub async fn list_devices(
        &self,
        cohort: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<DeviceRecord>> {
        let limit = limit.clamp(1, 1000);
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM devices WHERE 1 = 1"));
        if let Some(c) = cohort {
            q.push(" AND cohort = ").push_bind(c.to_string());
        }
        if let Some(c) = cursor {
            q.push(" AND id > ").push_bind(decode(c)?);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit) + 1);
        let mut items: Vec<DeviceRecord> = q.build_query_as().fetch_all(self.pool()).await?;
        let next_cursor = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            encode(&items.last().expect("limit ≥ 1").id)
        });
        Ok(Page { items, next_cursor })
    }

    /// One device.
    pub async fn device(&self, id: &str) -> Result<DeviceRecord> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM devices WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound { what: "device", id: id.to_string() })
    }

    /// The device's latest samples, newest first.
    pub async fn recent_telemetry(&self, id: &str, limit: u32) -> Result<Vec<TelemetryRecord>> {
        let mut conn = self.pool().acquire().await?;
        latest_samples(&mut conn, id, i64::MAX, limit.max(1)).await
    }
}

/// A device's latest `limit` samples at or before `until`, newest first: the newest of each
/// per-device list, merged (at most 2 × `limit` rows are sorted).
pub(crate) async fn latest_samples(
    conn: &mut SqliteConnection,
    device: &str,
    until: i64,
    limit: u32,
) -> Result<Vec<TelemetryRecord>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT t.ts, t.metrics FROM (
             SELECT * FROM (SELECT ts, id FROM telemetry_device_recent
                            WHERE device_id = ?1 AND ts <= ?2 ORDER BY ts DESC LIMIT ?3)
             UNION ALL
             SELECT * FROM (SELECT ts, id FROM telemetry_device
                            WHERE device_id = ?1 AND ts <= ?2 ORDER BY ts DESC LIMIT ?3)
         ) AS s JOIN telemetry t ON t.id = s.id
         ORDER BY s.ts DESC LIMIT ?3",
    )
    .bind(device)
    .bind(until)
    .bind(i64::from(limit.min(10_000)))
    .fetch_all(&mut *conn)
    .await?)
}

impl Store {
    /// Moves the per-device list of recent samples into the main one when it holds at least
    /// `min_rows`; returns how many moved. Called by the single ingest writer between
    /// batches (see migration 0007): the bigger the move, the more samples share each
    /// device's page write.
    pub async fn compact_device_index(&self, min_rows: u64) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM telemetry_device_recent").fetch_one(&mut *tx).await?;
        if (pending as u64) < min_rows.max(1) {
            return Ok(0);
        }
        let moved = sqlx::query(
            "INSERT INTO telemetry_device (device_id, ts, id)
             SELECT device_id, ts, id FROM telemetry_device_recent ORDER BY device_id, ts",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM telemetry_device_recent").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_cursors_round_trip() {
        for id in ["dev-00001", "scanner/ä", ""] {
            assert_eq!(decode(&encode(id)).unwrap(), id);
        }
        for bad in ["x00", "d0", "dzz", "dff"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
