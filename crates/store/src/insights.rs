//! Dashboard reads: counters, hourly roll-ups and attribute counts, all kept current by the
//! triggers of migration 0002, so none of these reads scans the anomalies table.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Result, Store};

/// Counts for the dashboard's tiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DashboardStats {
    /// Anomalies by status.
    pub anomalies_by_status: BTreeMap<String, i64>,
    /// Anomalies by severity.
    pub anomalies_by_severity: BTreeMap<String, i64>,
    /// Anomalies by cohort (`""` for none).
    pub anomalies_by_cohort: BTreeMap<String, i64>,
    /// Incidents by status.
    pub incidents_by_status: BTreeMap<String, i64>,
    /// Devices ever seen.
    pub devices: i64,
    /// Devices with at least one unresolved incident.
    pub devices_with_open_incidents: i64,
}

/// One bucket of the anomalies-over-time chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendBucket {
    /// Bucket start, Unix ms.
    pub start: i64,
    /// Anomalies whose sample time falls in the bucket.
    pub count: i64,
    /// Sum of their scores.
    pub score_sum: f64,
}

/// Counts behind one attribute value's correlation with open incidents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttributeCorrelation {
    /// `cohort` or a label name.
    pub attribute: String,
    /// The value.
    pub value: String,
    /// Devices with this value that have an unresolved incident.
    pub affected: i64,
    /// Devices with this value.
    pub devices: i64,
    /// Up to the asked number of devices with this value and no unresolved incident.
    pub at_risk_sample: Vec<String>,
}

impl Store {
    /// The dashboard's counters: a few dozen rows read from maintained tables.
    pub async fn dashboard_stats(&self) -> Result<DashboardStats> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT dim, value, n FROM counters").fetch_all(self.pool()).await?;
        let mut s = DashboardStats::default();
        for (dim, value, n) in rows {
            let map = match dim.as_str() {
                "anomaly_status" => &mut s.anomalies_by_status,
                "anomaly_severity" => &mut s.anomalies_by_severity,
                "anomaly_cohort" => &mut s.anomalies_by_cohort,
                "incident_status" => &mut s.incidents_by_status,
                "devices" => {
                    s.devices = n;
                    continue;
                }
                _ => continue,
            };
            if n != 0 {
                map.insert(value, n);
            }
        }
        s.devices_with_open_incidents =
            sqlx::query_scalar("SELECT COUNT(*) FROM device_open_incidents").fetch_one(self.pool()).await?;
        Ok(s)
    }

    /// Hourly buckets with anomalies in [from, to) (Unix ms), oldest first; empty hours are
    /// not returned.
    pub async fn hourly_trend(&self, from_ms: i64, to_ms: i64) -> Result<Vec<TrendBucket>> {
        let rows: Vec<(i64, i64, f64)> = sqlx::query_as(
            "SELECT bucket, n, score_sum FROM anomaly_hourly WHERE bucket >= ? AND bucket < ? AND n > 0
             ORDER BY bucket",
        )
        .bind(from_ms - from_ms.rem_euclid(3_600_000))
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(start, count, score_sum)| TrendBucket { start, count, score_sum })
            .collect())
    }

    /// Start of the latest hour holding an anomaly.
    pub async fn latest_anomaly_hour(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MAX(bucket) FROM anomaly_hourly WHERE n > 0")
            .fetch_one(self.pool())
            .await?)
    }

    /// Devices in the fleet and devices with an unresolved incident.
    pub async fn fleet_totals(&self) -> Result<(i64, i64)> {
        let devices: Option<i64> =
            sqlx::query_scalar("SELECT n FROM counters WHERE dim = 'devices' AND value = ''")
                .fetch_optional(self.pool())
                .await?;
        let affected: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM device_open_incidents").fetch_one(self.pool()).await?;
        Ok((devices.unwrap_or(0), affected))
    }

    /// For every attribute value held by at least `min_affected` devices with unresolved
    /// incidents: those devices, all devices with the value, and a sample of the devices that
    /// share it without an incident yet.
    pub async fn attribute_correlations(
        &self,
        min_affected: i64,
        at_risk_sample: u32,
    ) -> Result<Vec<AttributeCorrelation>> {
        let affected: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT a.attr, a.value, COUNT(*) FROM device_open_incidents o
             JOIN device_attributes a ON a.device_id = o.device_id
             GROUP BY a.attr, a.value HAVING COUNT(*) >= ?",
        )
        .bind(min_affected.max(1))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(affected.len());
        for (attribute, value, n) in affected {
            let devices: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM device_attributes WHERE attr = ? AND value = ?")
                    .bind(&attribute)
                    .bind(&value)
                    .fetch_one(self.pool())
                    .await?;
            let at_risk: Vec<String> = sqlx::query_scalar(
                "SELECT a.device_id FROM device_attributes a WHERE a.attr = ? AND a.value = ?
                   AND NOT EXISTS (SELECT 1 FROM device_open_incidents o WHERE o.device_id = a.device_id)
                 ORDER BY a.device_id LIMIT ?",
            )
            .bind(&attribute)
            .bind(&value)
            .bind(i64::from(at_risk_sample))
            .fetch_all(self.pool())
            .await?;
            out.push(AttributeCorrelation {
                attribute,
                value,
                affected: n,
                devices,
                at_risk_sample: at_risk,
            });
        }
        Ok(out)
    }
}
