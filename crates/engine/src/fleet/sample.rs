//! Telemetry samples, validated once at the edge into typed values.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

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
    /// A metric appears twice in one sample.
    #[error("field `metrics.{0}`: given twice")]
    DuplicateMetric(String),
}

/// Device attributes (site, firmware, …), shared by all samples of a device.
pub type Labels = Arc<BTreeMap<String, String>>;

/// One validated telemetry sample. Names are reference-counted so that a reader can hand
/// the same device id, cohort, metric names and labels to every sample without copying.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Device identifier.
    pub device_id: Arc<str>,
    /// Sample time.
    pub ts: Timestamp,
    /// Metric values by name; names unique, values finite.
    pub metrics: Vec<(Arc<str>, f64)>,
    /// Cohort, e.g. `tc52/android-13`.
    pub cohort: Option<Arc<str>>,
    /// Free-form device attributes.
    pub labels: Labels,
}

impl Sample {
    /// Validates raw parts into a sample.
    pub fn new(
        device_id: Arc<str>,
        ts: Timestamp,
        metrics: Vec<(Arc<str>, f64)>,
        cohort: Option<Arc<str>>,
        labels: Labels,
    ) -> Result<Self, SampleError> {
        if device_id.is_empty() || device_id.len() > 256 {
            return Err(SampleError::BadDevice);
        }
        for (i, (name, v)) in metrics.iter().enumerate() {
            if name.is_empty() {
                return Err(SampleError::EmptyMetricName);
            }
            if !v.is_finite() {
                return Err(SampleError::NonFinite(name.to_string()));
            }
            if metrics[..i].iter().any(|(n, _)| n == name) {
                return Err(SampleError::DuplicateMetric(name.to_string()));
            }
        }
        Ok(Sample { device_id, ts, metrics, cohort: cohort.filter(|c| !c.is_empty()), labels })
    }

    /// The value of a metric, when the sample carries it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(n, _)| &**n == name).map(|&(_, v)| v)
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
        let nan = vec![("cpu".into(), f64::NAN)];
        let err = Sample::new("d1".into(), Timestamp(0), nan, None, Labels::default()).unwrap_err();
        assert_eq!(err.to_string(), "field `metrics.cpu`: value must be a finite number");
        let empty = Sample::new("".into(), Timestamp(0), vec![], None, Labels::default());
        assert_eq!(empty.unwrap_err(), SampleError::BadDevice);
        let twice = vec![("cpu".into(), 1.0), ("cpu".into(), 2.0)];
        let err = Sample::new("d".into(), Timestamp(0), twice, None, Labels::default()).unwrap_err();
        assert_eq!(err.to_string(), "field `metrics.cpu`: given twice");
    }
}
