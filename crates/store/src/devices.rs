//! Devices: keyset list by id, detail with recent telemetry.

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::anomalies::Page;
use crate::error::StoreError;
use crate::unmoved::Unmoved;
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
/// sample rewrote a device row per sample); the latest sample time is one seek in
/// the device's runs, raised to its latest sample not yet moved by [`Store::with_latest`].
const COLUMNS: &str = "id, cohort, labels, first_seen,
    COALESCE((SELECT MAX(last_ts) FROM telemetry_device_runs WHERE device_id = devices.id), last_seen) AS last_seen";

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
        for d in &mut items {
            self.with_latest(d);
        }
        let next_cursor = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            encode(&items.last().expect("limit ≥ 1").id)
        });
        Ok(Page { items, next_cursor })
    }

    /// One device.
    pub async fn device(&self, id: &str) -> Result<DeviceRecord> {
        let mut d: DeviceRecord = sqlx::query_as(&format!("SELECT {COLUMNS} FROM devices WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound { what: "device", id: id.to_string() })?;
        self.with_latest(&mut d);
        Ok(d)
    }

    /// Raises `last_seen` to the device's latest sample not yet moved into a run.
    fn with_latest(&self, d: &mut DeviceRecord) {
        if let Some(ts) = self.unmoved.latest_ts(&d.id) {
            d.last_seen = d.last_seen.max(ts);
        }
    }

    /// The device's latest samples, newest first.
    pub async fn recent_telemetry(&self, id: &str, limit: u32) -> Result<Vec<TelemetryRecord>> {
        let mut conn = self.pool().acquire().await?;
        latest_samples(&mut conn, &self.unmoved, id, i64::MAX, limit.max(1)).await
    }
}

/// A device's latest `limit` samples at or before `until`, newest first: the times come from
/// the list in memory and the device's newest runs, the rows through the unique (time,
/// device) index.
pub(crate) async fn latest_samples(
    conn: &mut SqliteConnection,
    unmoved: &Unmoved,
    device: &str,
    until: i64,
    limit: u32,
) -> Result<Vec<TelemetryRecord>> {
    use futures_util::TryStreamExt;
    let limit = limit.min(10_000) as usize;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut times = unmoved.latest(device, until, limit);
    {
        // Runs newest first. A run holds only times up to its key, so once `limit` times are
        // at least as new as the next run's key, no later run can add a newer one.
        let mut runs = sqlx::query_as::<_, (i64, String)>(
            "SELECT last_ts, times FROM telemetry_device_runs WHERE device_id = ? ORDER BY last_ts DESC, seq DESC",
        )
        .bind(device)
        .fetch(&mut *conn);
        while let Some((last_ts, run)) = runs.try_next().await? {
            if times.len() >= limit {
                keep_newest(&mut times, limit);
                if times.len() == limit && times[limit - 1] >= last_ts {
                    break;
                }
            }
            let run: Vec<i64> = serde_json::from_str(&run).map_err(|e| {
                StoreError::Corrupt(format!(
                    "telemetry_device_runs: the run of `{device}` ending {last_ts}: {e}"
                ))
            })?;
            times.extend(run.into_iter().filter(|&ts| ts <= until));
        }
    }
    keep_newest(&mut times, limit);
    let mut rows = Vec::with_capacity(times.len());
    for chunk in times.chunks(500) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT ts, metrics FROM telemetry WHERE device_id = ");
        q.push_bind(device).push(" AND ts IN (");
        let mut list = q.separated(", ");
        for &ts in chunk {
            list.push_bind(ts);
        }
        q.push(")");
        rows.extend(q.build_query_as::<TelemetryRecord>().fetch_all(&mut *conn).await?);
    }
    rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.ts));
    Ok(rows)
}

/// Keeps the `limit` newest distinct times, newest first.
fn keep_newest(times: &mut Vec<i64>, limit: usize) {
    times.sort_unstable_by(|a, b| b.cmp(a));
    times.dedup();
    times.truncate(limit);
}

/// Most times in one run row.
const RUN_LEN: usize = 256;

impl Store {
    /// Moves the samples stored since the last move into per-device runs when at least
    /// `min_rows` are listed; returns how many moved. Called by the single ingest writer
    /// between batches (see migrations 0007 and 0008): the bigger the move, the more samples
    /// share each device's row.
    pub async fn compact_device_index(&self, min_rows: u64) -> Result<u64> {
        if (self.unmoved.len() as u64) < min_rows.max(1) {
            return Ok(0);
        }
        // The write lock first: every ingest transaction that listed samples has committed
        // (or taken them back), and none lists more until this one ends. So the list handed
        // over is exactly the rows between the old mark and the new one.
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let Some(m) = self.unmoved.start_move() else { return Ok(0) };
        let result = write_runs(&mut tx, &m).await;
        let result = match result {
            Ok(r) => tx.commit().await.map(|()| r).map_err(StoreError::from),
            Err(e) => Err(e),
        };
        self.unmoved.finish_move(result.is_ok());
        result
    }
}

/// Writes one run per device (more for a device with over [`RUN_LEN`] samples) and advances
/// the mark; returns the samples moved.
async fn write_runs(conn: &mut SqliteConnection, m: &crate::unmoved::Move) -> Result<u64> {
    let through: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM telemetry").fetch_one(&mut *conn).await?;
    let mut devices: Vec<(&str, &[i64])> = m.times.iter().map(|(d, t)| (&**d, t.as_slice())).collect();
    // In key order, so the inserts walk the table's pages once.
    devices.sort_unstable_by_key(|&(d, _)| d);
    let runs: Vec<(&str, &[i64])> =
        devices.iter().flat_map(|&(d, times)| times.chunks(RUN_LEN).map(move |c| (d, c))).collect();
    let mut moved = 0;
    for chunk in runs.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT OR IGNORE INTO telemetry_device_runs (device_id, last_ts, seq, times) ",
        );
        q.push_values(chunk, |mut b, &(device, times)| {
            let json = serde_json::to_string(times).expect("integers serialise");
            b.push_bind(device)
                .push_bind(*times.last().expect("runs are not empty"))
                .push_bind(through)
                .push_bind(json);
        });
        q.build().execute(&mut *conn).await?;
        moved += chunk.iter().map(|(_, t)| t.len() as u64).sum::<u64>();
    }
    sqlx::query("UPDATE telemetry_device_moves SET moved_through = ?")
        .bind(through)
        .execute(&mut *conn)
        .await?;
    Ok(moved)
}

/// Run rows per INSERT statement (4 parameters each).
const ROWS_PER_STATEMENT: usize = 200;

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
