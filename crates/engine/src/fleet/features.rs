//! From telemetry to feature rows: per-device streaming state, used unchanged offline (a
//! whole file, devices in parallel) and online (one sample at a time).

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::config::{DerivedOp, FeatureSource, FleetConfig, RuleSpec};
use super::rolling::{Rejected, Reorder, Window};
use super::sample::{Sample, Timestamp};

/// The features of one sample after its device's windows took it in, and the rules it fired.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// Device.
    pub device_id: Arc<str>,
    /// Sample time.
    pub ts: Timestamp,
    /// Cohort of the sample (the latest one the device reported).
    pub cohort: Option<Arc<str>>,
    /// One value per [`FleetConfig::features`]; NaN where undefined (e.g. a metric not seen yet).
    pub values: Vec<f32>,
    /// Indices into [`FleetConfig::rules`] of the rules that fired.
    pub rules_fired: Vec<usize>,
}

/// Streaming state of one device: re-order buffer, one window per metric, rule memory.
pub struct DeviceState {
    reorder: Reorder<Sample>,
    windows: Vec<Window>,
    /// Time of the previous value of each metric (for rates of change).
    metric_ts: Vec<Option<i64>>,
    last_ts: Option<i64>,
    cohort: Option<Arc<str>>,
    /// Value of each configured metric in the sample being applied (reused buffer).
    current: Vec<Option<f64>>,
}

impl DeviceState {
    /// Fresh state for a device.
    pub fn new(cfg: &FleetConfig) -> Self {
        Self {
            reorder: Reorder::new(cfg.tolerance_ms, cfg.max_pending),
            windows: cfg
                .metrics
                .iter()
                .map(|m| Window::with_stats(m.window, cfg.ewma_alpha, &m.stats))
                .collect(),
            metric_ts: vec![None; cfg.metrics.len()],
            last_ts: None,
            cohort: None,
            current: vec![None; cfg.metrics.len()],
        }
    }

    /// Takes a sample; rows for samples released by the re-order buffer are appended to `out`.
    pub fn push(
        &mut self,
        cfg: &FleetConfig,
        sample: Sample,
        out: &mut Vec<FeatureRow>,
    ) -> Result<(), Rejected> {
        let mut ready = Vec::new();
        self.reorder.push(sample.ts.0, sample, &mut ready)?;
        for (_, s) in ready {
            out.push(self.apply(cfg, &s));
        }
        Ok(())
    }

    /// Releases the samples still held for re-ordering (end of a file).
    pub fn flush(&mut self, cfg: &FleetConfig, out: &mut Vec<FeatureRow>) {
        let mut ready = Vec::new();
        self.reorder.flush(&mut ready);
        for (_, s) in ready {
            out.push(self.apply(cfg, &s));
        }
    }

    fn apply(&mut self, cfg: &FleetConfig, s: &Sample) -> FeatureRow {
        let ts = s.ts.0;
        let mut rules_fired = Vec::new();
        let mut previous = vec![None; cfg.metrics.len()];
        for (mi, m) in cfg.metrics.iter().enumerate() {
            self.current[mi] = s.metric(&m.name);
            if let Some(x) = self.current[mi] {
                previous[mi] =
                    (!self.windows[mi].is_empty()).then(|| (self.windows[mi].last(), self.metric_ts[mi]));
                self.windows[mi].push(x);
                self.metric_ts[mi] = Some(ts);
            }
        }
        for (ri, rule) in cfg.rules.iter().enumerate() {
            let fired = match rule {
                RuleSpec::Threshold { metric, below, above, .. } => {
                    let mi = cfg.metric_index(metric).expect("validated");
                    self.current[mi]
                        .is_some_and(|x| below.is_some_and(|b| x < b) || above.is_some_and(|a| x > a))
                }
                RuleSpec::RateOfChange { metric, max_per_hour, .. } => {
                    let mi = cfg.metric_index(metric).expect("validated");
                    match (self.current[mi], previous[mi]) {
                        (Some(x), Some((prev, Some(prev_ts)))) if ts > prev_ts => {
                            let hours = (ts - prev_ts) as f64 / 3_600_000.0;
                            ((x - prev) / hours).abs() > *max_per_hour
                        }
                        _ => false,
                    }
                }
                RuleSpec::FlatLine { metric, samples, .. } => {
                    let mi = cfg.metric_index(metric).expect("validated");
                    self.current[mi].is_some() && self.windows[mi].run_length() >= *samples
                }
                RuleSpec::MissingHeartbeat { max_gap_secs, .. } => {
                    self.last_ts.is_some_and(|prev| ts - prev > (*max_gap_secs as i64).saturating_mul(1000))
                }
            };
            if fired {
                rules_fired.push(ri);
            }
        }
        self.last_ts = Some(ts);
        if s.cohort.is_some() {
            self.cohort.clone_from(&s.cohort);
        }
        FeatureRow {
            device_id: s.device_id.clone(),
            ts: s.ts,
            cohort: self.cohort.clone(),
            values: self.features(cfg),
            rules_fired,
        }
    }

    /// The current feature vector, in [`FleetConfig::features`] order.
    pub fn features(&self, cfg: &FleetConfig) -> Vec<f32> {
        let mut values: Vec<f64> = Vec::with_capacity(cfg.features.len());
        for f in &cfg.features {
            let v = match f.source {
                FeatureSource::Rolling { metric, stat } => self.windows[metric].stat(stat),
                FeatureSource::Derived { op, left, right } => {
                    let (a, b) = (values[left], values[right]);
                    match op {
                        DerivedOp::Ratio => {
                            if b == 0.0 {
                                f64::NAN
                            } else {
                                a / b
                            }
                        }
                        DerivedOp::Diff => a - b,
                        DerivedOp::Product => a * b,
                    }
                }
            };
            values.push(v);
        }
        values.into_iter().map(|v| if v.is_finite() { v as f32 } else { f32::NAN }).collect()
    }
}

/// A sample the pipeline refused, with its position in the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Index of the sample in the input.
    pub index: usize,
    /// Device of the sample.
    pub device_id: Arc<str>,
    /// Why.
    pub reason: Rejected,
}

/// Offline path: all samples of a file through the same per-device state as online ingest,
/// devices in parallel. Rows come out grouped by device (devices in first-seen order), each
/// device's rows in time order.
pub fn extract_all(cfg: &FleetConfig, samples: Vec<Sample>) -> (Vec<FeatureRow>, Vec<Refused>) {
    let mut device_of: HashMap<Arc<str>, usize> = HashMap::new();
    let mut per_device: Vec<Vec<(usize, Sample)>> = Vec::new();
    for (i, s) in samples.into_iter().enumerate() {
        let next = per_device.len();
        let d = *device_of.entry(s.device_id.clone()).or_insert(next);
        if d == next {
            per_device.push(Vec::new());
        }
        per_device[d].push((i, s));
    }
    let results: Vec<(Vec<FeatureRow>, Vec<Refused>)> = per_device
        .into_par_iter()
        .map(|samples| {
            let mut state = DeviceState::new(cfg);
            let mut rows = Vec::with_capacity(samples.len());
            let mut refused = Vec::new();
            for (i, s) in samples {
                let device_id = s.device_id.clone();
                if let Err(reason) = state.push(cfg, s, &mut rows) {
                    refused.push(Refused { index: i, device_id, reason });
                }
            }
            state.flush(cfg, &mut rows);
            (rows, refused)
        })
        .collect();
    let mut rows = Vec::new();
    let mut refused = Vec::new();
    for (r, f) in results {
        rows.extend(r);
        refused.extend(f);
    }
    refused.sort_by_key(|r| r.index);
    (rows, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[stream]
tolerance_secs = 120
[[metrics]]
name = "temp"
window = 3
stats = ["mean", "max", "last"]
[[metrics]]
name = "battery"
window = 2
stats = ["min"]
[[rules]]
kind = "threshold"
name = "hot"
metric = "temp"
above = 50.0
[[rules]]
kind = "flat_line"
name = "stuck"
metric = "battery"
samples = 3
[[rules]]
kind = "rate_of_change"
name = "jump"
metric = "temp"
max_per_hour = 600.0
[[rules]]
kind = "missing_heartbeat"
name = "silent"
max_gap_secs = 600
"#;

    fn s(device: &str, minute: i64, temp: Option<f64>, battery: f64) -> Sample {
        let mut m = vec![("battery".into(), battery)];
        if let Some(t) = temp {
            m.push(("temp".into(), t));
        }
        Sample::new(device.into(), Timestamp(minute * 60_000), m, Some("c1".into()), Default::default())
            .unwrap()
    }

    #[test]
    fn offline_rows_features_and_rules() {
        let cfg = FleetConfig::from_toml(CONFIG).unwrap();
        assert_eq!(cfg.feature_names(), ["temp.mean", "temp.max", "temp.last", "battery.min"]);
        let samples = vec![
            s("a", 0, Some(20.0), 90.0),
            s("b", 0, Some(30.0), 50.0),
            s("a", 2, Some(22.0), 90.0),
            s("a", 1, Some(21.0), 90.0), // one minute out of order: re-ordered
            s("a", 3, Some(60.0), 80.0), // hot, and +38 °C in a minute
            s("a", 20, None, 80.0),      // 17 minutes of silence; no temp in this sample
            s("a", 2, Some(99.0), 1.0),  // duplicate time
            s("b", 1, Some(31.0), 50.0),
        ];
        let (rows, refused) = extract_all(&cfg, samples);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].index, 6);
        assert!(matches!(refused[0].reason, Rejected::Duplicate { .. } | Rejected::Late { .. }));
        let a: Vec<&FeatureRow> = rows.iter().filter(|r| &*r.device_id == "a").collect();
        assert_eq!(a.iter().map(|r| r.ts.0 / 60_000).collect::<Vec<_>>(), [0, 1, 2, 3, 20]);
        // Minute 2: temp window [20, 21, 22].
        assert_eq!(a[2].values, [21.0, 22.0, 22.0, 90.0]);
        // Minute 3: window [21, 22, 60], battery window [90, 80].
        assert_eq!(a[3].values, [(21.0 + 22.0 + 60.0) / 3.0, 60.0, 60.0, 80.0]);
        let names = |r: &FeatureRow| {
            r.rules_fired.iter().map(|&i| cfg.rules[i].name().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(a[3]), ["hot", "jump"]);
        assert_eq!(names(a[2]), ["stuck"], "battery 90 three times in a row");
        assert_eq!(names(a[4]), ["silent"]);
        // A sample without temp leaves the temp features as they were.
        assert_eq!(a[4].values[..3], a[3].values[..3]);
        assert_eq!(rows.iter().filter(|r| &*r.device_id == "b").count(), 2);
    }

    #[test]
    fn online_and_offline_paths_agree() {
        let cfg = FleetConfig::from_toml(CONFIG).unwrap();
        let samples: Vec<Sample> = (0..50)
            .map(|i| s("d", i * 2 + (i % 3 == 0) as i64, Some((i * 7 % 13) as f64), (i % 5) as f64))
            .collect();
        let (offline, _) = extract_all(&cfg, samples.clone());
        let mut state = DeviceState::new(&cfg);
        let mut online = Vec::new();
        for x in samples {
            state.push(&cfg, x, &mut online).unwrap();
        }
        state.flush(&cfg, &mut online);
        assert_eq!(offline, online);
    }
}
