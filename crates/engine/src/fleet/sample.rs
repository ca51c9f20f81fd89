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
        if let Some(ts) = parse_utc_fast(t.as_bytes()) {
            return Ok(ts);
        }
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

/// Fast path for the common `YYYY-MM-DDTHH:MM:SS[.fff]Z` form (what anomalyd itself writes);
/// anything else goes to the general parser.
fn parse_utc_fast(b: &[u8]) -> Option<Timestamp> {
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, s) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let (ms, end) = match b[19] {
        b'Z' => (0, 20),
        b'.' if b.len() == 24 && b[23] == b'Z' => (digits(20..23)?, 24),
        _ => return None,
    };
    let days_in_month = [
        31,
        if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if end != b.len()
        || !(1..=12).contains(&mo)
        || d < 1
        || d > days_in_month[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || s > 59
    {
        return None;
    }
    // Days since 1970-01-01 (H. Hinnant's days_from_civil).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Timestamp(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms))
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

/// The metric names of a sample, validated once (non-empty, unique) and shared by every
/// sample with the same layout, so a sample carries one reference instead of one per metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricLayout(Arc<[Arc<str>]>);

impl MetricLayout {
    /// Validates a list of metric names.
    pub fn new(names: Vec<Arc<str>>) -> Result<Self, SampleError> {
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(SampleError::EmptyMetricName);
            }
            if names[..i].contains(n) {
                return Err(SampleError::DuplicateMetric(n.to_string()));
            }
        }
        Ok(Self(names.into()))
    }

    /// The names.
    pub fn names(&self) -> &[Arc<str>] {
        &self.0
    }

    /// True when both are the same shared list (a cheap identity test).
    pub fn same(&self, other: &MetricLayout) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One validated telemetry sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Device identifier.
    pub device_id: Arc<str>,
    /// Sample time.
    pub ts: Timestamp,
    /// Names of `values`.
    pub layout: MetricLayout,
    /// `values[i]` is the metric `layout.names()[i]`; NaN means not reported.
    pub values: Vec<f64>,
    /// Cohort, e.g. `tc52/android-13`.
    pub cohort: Option<Arc<str>>,
    /// Free-form device attributes.
    pub labels: Labels,
}

impl Sample {
    /// Validates raw parts into a sample: one value per name, each finite or NaN (missing).
    pub fn new(
        device_id: Arc<str>,
        ts: Timestamp,
        layout: MetricLayout,
        values: Vec<f64>,
        cohort: Option<Arc<str>>,
        labels: Labels,
    ) -> Result<Self, SampleError> {
        if device_id.is_empty() || device_id.len() > 256 {
            return Err(SampleError::BadDevice);
        }
        assert_eq!(layout.names().len(), values.len(), "one value per metric name");
        if let Some(i) = values.iter().position(|v| v.is_infinite()) {
            return Err(SampleError::NonFinite(layout.names()[i].to_string()));
        }
        Ok(Sample { device_id, ts, layout, values, cohort: cohort.filter(|c| !c.is_empty()), labels })
    }

    /// The value of a metric, when the sample carries it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.layout.names().iter().position(|n| &**n == name).map(|i| self.values[i]).filter(|v| !v.is_nan())
    }

    /// The reported metrics as (name, value).
    pub fn metrics(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.layout.names().iter().zip(&self.values).filter(|(_, v)| !v.is_nan()).map(|(n, &v)| (&**n, v))
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
    fn fast_path_agrees_with_chrono() {
        let mut t = -2_208_988_800_000i64; // 1900-01-01
        while t < 4_102_444_800_000 {
            // 2100-01-01
            let text = Timestamp(t).to_rfc3339();
            assert_eq!(parse_utc_fast(text.as_bytes()), Some(Timestamp(t)), "{text}");
            let whole =
                chrono::DateTime::from_timestamp_millis(t).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            assert_eq!(parse_utc_fast(whole.as_bytes()), Some(Timestamp(t - t.rem_euclid(1000))), "{whole}");
            t += 86_399_937; // a prime-ish step through days, hours and milliseconds
        }
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T10:15:00+01:00",
        ] {
            assert_eq!(parse_utc_fast(bad.as_bytes()), None, "{bad}");
        }
        assert!(Timestamp::parse("2026-02-30T00:00:00Z").is_err());
    }

    #[test]
    fn bad_fields_are_named() {
        let layout = MetricLayout::new(vec!["cpu".into()]).unwrap();
        let err = Sample::new(
            "d1".into(),
            Timestamp(0),
            layout.clone(),
            vec![f64::INFINITY],
            None,
            Labels::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "field `metrics.cpu`: value must be a finite number");
        let empty = Sample::new("".into(), Timestamp(0), layout.clone(), vec![1.0], None, Labels::default());
        assert_eq!(empty.unwrap_err(), SampleError::BadDevice);
        let err = MetricLayout::new(vec!["cpu".into(), "cpu".into()]).unwrap_err();
        assert_eq!(err.to_string(), "field `metrics.cpu`: given twice");
        let s =
            Sample::new("d".into(), Timestamp(0), layout, vec![f64::NAN], None, Labels::default()).unwrap();
        assert_eq!(s.metric("cpu"), None, "NaN means not reported");
    }
}
