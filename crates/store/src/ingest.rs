//! Durable batch writes: telemetry, devices, anomalies and incident updates in one
//! transaction.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::anomalies::{NewAnomaly, insert_anomaly};
use crate::device_cache::{DeviceUpdate, KnownDevice};
use crate::incidents::{DedupPolicy, attach_to_incident};
use crate::webhooks::{OpenedIncident, enqueue_alerts};
use crate::{Result, Store};

/// Telemetry rows per INSERT statement (3 parameters each, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 1000;

/// One telemetry sample as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRow {
    /// Device.
    pub device_id: String,
    /// Unix milliseconds.
    pub ts: i64,
    /// Cohort reported with the sample.
    pub cohort: Option<String>,
    /// Device labels as JSON object text; empty when the sample carries none.
    pub labels: String,
    /// Metrics as JSON object text.
    pub metrics: String,
}

/// Everything one ingest batch writes.
#[derive(Debug, Clone, Default)]
pub struct IngestBatch {
    /// Samples.
    pub telemetry: Vec<TelemetryRow>,
    /// How the telemetry splits into the requests it came from: consecutive runs of these
    /// lengths (empty: one request). Outcomes are reported per request.
    pub requests: Vec<usize>,
    /// Anomalies found (each tied to one sample by device and time, possibly a sample of an
    /// earlier batch that the pipeline held back for re-ordering).
    pub anomalies: Vec<NewAnomaly>,
    /// How anomalies group into incidents.
    pub dedup: DedupPolicy,
}

/// What a committed batch changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    /// Samples newly stored.
    pub inserted: u64,
    /// Samples already stored (a retried batch): skipped, not duplicated.
    pub duplicates: u64,
    /// (inserted, duplicates) for each request of [`IngestBatch::requests`].
    pub per_request: Vec<(u64, u64)>,
    /// Anomalies stored.
    pub anomalies: u64,
    /// Incidents opened by this batch (ids).
    pub incidents_opened: Vec<i64>,
    /// Anomalies that joined an incident already open.
    pub anomalies_deduplicated: u64,
    /// Webhook deliveries queued in the outbox (one per matching webhook and opened
    /// incident).
    pub webhook_deliveries: u64,
}

/// A batch's rows merged into one update per device.
fn merge_devices(rows: &[TelemetryRow]) -> Vec<DeviceUpdate<'_>> {
    let mut index: foldhash::HashMap<&str, usize> = Default::default();
    let mut out: Vec<DeviceUpdate<'_>> = Vec::new();
    for t in rows {
        let labels_given = !t.labels.is_empty() && t.labels != "{}";
        match index.get(t.device_id.as_str()) {
            Some(&k) => {
                let d = &mut out[k];
                d.first = d.first.min(t.ts);
                d.last = d.last.max(t.ts);
                if t.cohort.is_some() {
                    d.cohort = t.cohort.as_deref();
                }
                if labels_given {
                    d.labels = &t.labels;
                }
            }
            None => {
                index.insert(&t.device_id, out.len());
                out.push(DeviceUpdate {
                    id: &t.device_id,
                    cohort: t.cohort.as_deref(),
                    labels: if labels_given { &t.labels } else { "{}" },
                    first: t.ts,
                    last: t.ts,
                });
            }
        }
    }
    out
}

/// Inserts `rows`, skipping (device, ts) pairs already stored; returns how many were new.
async fn insert_telemetry(conn: &mut SqliteConnection, rows: &[TelemetryRow]) -> Result<u64> {
    let mut inserted = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT OR IGNORE INTO telemetry (device_id, ts, metrics) ");
        q.push_values(chunk, |mut b, t| {
            b.push_bind(t.device_id.as_str()).push_bind(t.ts).push_bind(t.metrics.as_str());
        });
        inserted += q.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

/// Upserts the devices of `updates` at `write`; returns the stored rows of those at `read_back`.
async fn upsert_devices(
    conn: &mut SqliteConnection,
    updates: &[DeviceUpdate<'_>],
    write: &[usize],
    read_back: &[usize],
) -> Result<Vec<(Box<str>, KnownDevice)>> {
    for chunk in write.chunks(ROWS_PER_STATEMENT / 2) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO devices (id, cohort, labels, first_seen, last_seen) ");
        q.push_values(chunk, |mut b, &i| {
            let d = &updates[i];
            b.push_bind(d.id).push_bind(d.cohort).push_bind(d.labels).push_bind(d.first).push_bind(d.last);
        });
        // Only a new device or a changed cohort or label set writes. The latest sample time
        // is read from the telemetry index instead (see devices.rs).
        q.push(
            " ON CONFLICT (id) DO UPDATE SET
               cohort = COALESCE(excluded.cohort, devices.cohort),
               labels = CASE WHEN excluded.labels = '{}' THEN devices.labels ELSE excluded.labels END,
               first_seen = MIN(devices.first_seen, excluded.first_seen)
             WHERE (excluded.cohort IS NOT NULL AND excluded.cohort IS NOT devices.cohort)
                OR (excluded.labels != '{}' AND excluded.labels != devices.labels)
                OR excluded.first_seen < devices.first_seen",
        );
        q.build().execute(&mut *conn).await?;
    }
    let mut rows = Vec::with_capacity(read_back.len());
    for chunk in read_back.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT id, cohort, labels, first_seen FROM devices WHERE id IN (");
        let mut ids = q.separated(", ");
        for &i in chunk {
            ids.push_bind(updates[i].id);
        }
        q.push(")");
        let found: Vec<(String, Option<String>, String, i64)> =
            q.build_query_as().fetch_all(&mut *conn).await?;
        rows.extend(found.into_iter().map(|(id, cohort, labels, first_seen)| {
            (
                id.into_boxed_str(),
                KnownDevice {
                    cohort: cohort.map(String::into_boxed_str),
                    labels: labels.into_boxed_str(),
                    first_seen,
                },
            )
        }));
    }
    Ok(rows)
}

impl Store {
    /// Writes a batch in one transaction; when this returns `Ok` the batch is durable.
    /// Idempotent on (device, time): samples already stored are skipped, and a sample never
    /// gets a second anomaly, so a retried batch stores nothing twice. Each new anomaly
    /// joins the open incident with its signature, or opens one with an evidence snapshot;
    /// each opened incident queues its webhook deliveries in the same transaction.
    pub async fn ingest(&self, batch: &IngestBatch, now_ms: i64) -> Result<IngestOutcome> {
        let mut listed = Vec::new();
        let result = self.ingest_in_one_transaction(batch, now_ms, &mut listed).await;
        if result.is_err() {
            self.unmoved.take_back(&listed);
        }
        result
    }

    async fn ingest_in_one_transaction<'b>(
        &self,
        batch: &'b IngestBatch,
        now_ms: i64,
        listed: &mut Vec<(&'b str, i64)>,
    ) -> Result<IngestOutcome> {
        let mut tx = self.pool().begin().await?;
        let mut out = IngestOutcome::default();
        let whole = [batch.telemetry.len()];
        let requests = if batch.requests.is_empty() { &whole[..] } else { &batch.requests[..] };
        let mut start = 0;
        for &len in requests {
            let end = (start + len).min(batch.telemetry.len());
            let rows = &batch.telemetry[start..end];
            let inserted = insert_telemetry(&mut tx, rows).await?;
            let duplicates = rows.len() as u64 - inserted;
            out.per_request.push((inserted, duplicates));
            out.inserted += inserted;
            out.duplicates += duplicates;
            start = end;
        }
        // Listed before the commit, as the evidence of an incident opened below reads them
        // (and taken back if the transaction fails). A duplicate already moved is listed
        // again; readers drop the repeated time.
        *listed = self.unmoved.add(batch.telemetry.iter().map(|t| (t.device_id.as_str(), t.ts)));
        let updates = merge_devices(&batch.telemetry);
        let plan = self.devices.plan(&updates);
        let read_back = upsert_devices(&mut tx, &updates, &plan.write, &plan.unknown).await?;
        let mut opened = Vec::new();
        for a in &batch.anomalies {
            let Some(id) = insert_anomaly(&mut tx, a, now_ms).await? else { continue };
            out.anomalies += 1;
            match attach_to_incident(&mut tx, &self.unmoved, id, a, &batch.dedup).await? {
                (incident, true) => {
                    out.incidents_opened.push(incident);
                    opened.push(OpenedIncident {
                        incident_id: incident,
                        anomaly_id: id,
                        severity: &a.severity,
                    });
                }
                (_, false) => out.anomalies_deduplicated += 1,
            }
        }
        out.webhook_deliveries = enqueue_alerts(&mut tx, &opened, now_ms).await?;
        tx.commit().await?;
        self.devices.learn(plan.changed.into_iter().chain(read_back));
        Ok(out)
    }
}
