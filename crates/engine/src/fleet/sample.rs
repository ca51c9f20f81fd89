//! Telemetry samples, validated once at the edge into typed values.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Parses RFC 3339 (`2026-11-26T10:15:00Z`, any offset), `YYYY-MM-DD HH:MM:SS[.fff]` taken
    /// as UTC, or integer Unix milliseconds.
    pub fn parse(text: &str) -> Result<Self, SampleError> {
        let t = text.trim();
        if let Ok(ms) = t.parse::<i64>() {
            return Ok(Timestamp(ms));
        }
        if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
            return Ok(Timestamp(dt.timestamp_millis()));
        }
        for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
            if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, format) {
                return Ok(Timestamp(dt.and_utc().timestamp_millis()));
            }
        }
        Err(SampleError::BadTimestamp(text.to_string()))
    }

    /// RFC 3339 text in UTC with millisecond precision.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => self.0.to_string(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Why a sample was refused; each names the field at fault.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SampleError {
    /// `device_id` is empty or too long.
    #[error("field `device_id`: must be 1 to 256 characters")]
    BadDevice,
    /// `ts` is neither RFC 3339 nor Unix milliseconds.
    #[error("field `ts`: `{0}` is not an RFC 3339 time or Unix milliseconds")]
    BadTimestamp(String),
    /// A metric value is NaN or infinite.
    #[error("field `metrics.{0}`: value must be a finite number")]
    NonFinite(String),
    /// A metric name is empty.
    #[error("field `metrics`: metric names must not be empty")]
    EmptyMetricName,
}

/// One validated telemetry sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Device identifier.
    pub device_id: String,
    /// Sample time.
    pub ts: Timestamp,
    /// Metric values by name; all finite.
    pub metrics: BTreeMap<String, f64>,
    /// Cohort, e.g. `tc52/android-13`.
    pub cohort: Option<String>,
    /// Free-form device attributes (site, firmware, ...).
    pub labels: BTreeMap<String, String>,
}

impl Sample {
    /// Validates raw parts into a sample.
    pub fn new(
        device_id: &str,
        ts: Timestamp,
        metrics: impl IntoIterator<Item = (String, f64)>,
        cohort: Option<String>,
        labels: BTreeMap<String, String>,
    ) -> Result<Self, SampleError> {
        if device_id.is_empty() || device_id.len() > 256 {
            return Err(SampleError::BadDevice);
        }
        let mut map = BTreeMap::new();
        for (name, v) in metrics {
            if name.is_empty() {
                return Err(SampleError::EmptyMetricName);
            }
            if !v.is_finite() {
                return Err(SampleError::NonFinite(name));
            }
            map.insert(name, v);
        }
        Ok(Sample {
            device_id: device_id.to_string(),
            ts,
            metrics: map,
            cohort: cohort.filter(|c| !c.is_empty()),
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_form() {
        let t = Timestamp::parse("2026-11-26T10:15:00Z").unwrap();
        assert_eq!(t, Timestamp(1_795_688_100_000));
        assert_eq!(Timestamp::parse("2026-11-26T11:15:00+01:00").unwrap(), t);
        assert_eq!(Timestamp::parse("2026-11-26 10:15:00").unwrap(), t);
        assert_eq!(Timestamp::parse("1795688100000").unwrap(), t);
        assert_eq!(t.to_rfc3339(), "2026-11-26T10:15:00.000Z");
        assert_eq!(
            Timestamp::parse("yesterday").unwrap_err().to_string(),
            "field `ts`: `yesterday` is not an RFC 3339 time or Unix milliseconds"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = Sample::new("d1", Timestamp(0), [("cpu".to_string(), f64::NAN)], None, BTreeMap::new())
            .unwrap_err();
        assert_eq!(err.to_string(), "field `metrics.cpu`: value must be a finite number");
        assert_eq!(
            Sample::new("", Timestamp(0), [], None, BTreeMap::new()).unwrap_err(),
            SampleError::BadDevice
        );
    }
}
