//! From telemetry to feature rows: per-device streaming state, used unchanged offline (a
//! whole file, devices in parallel) and online (one sample at a time).

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::config::{DerivedOp, FeatureSource, FleetConfig, RuleSpec};
use super::rolling::{Rejected, Reorder, Window};
use super::sample::{MetricLayout, Sample, Timestamp};

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
    /// Previous value and time of each metric before the sample (reused buffer).
    previous: Vec<Option<(f64, Option<i64>)>>,
    /// Layout of the last sample and where each of its metrics sits in the config: readers
    /// hand every sample the same layout, so the lookup is done once per layout.
    layout: Option<MetricLayout>,
    layout_index: Vec<Option<usize>>,
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
            previous: vec![None; cfg.metrics.len()],
            layout: None,
            layout_index: Vec::new(),
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

    /// Samples held back for re-ordering.
    pub fn pending(&self) -> usize {
        self.reorder.pending()
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
        let mut values = Vec::with_capacity(cfg.features.len());
        let rules_fired = self.apply_into(cfg, s, &mut values);
        if s.cohort.is_some() {
            self.cohort.clone_from(&s.cohort);
        }
        FeatureRow {
            device_id: s.device_id.clone(),
            ts: s.ts,
            cohort: self.cohort.clone(),
            values,
            rules_fired,
        }
    }

    /// Maps the sample's metrics onto the configured ones, reusing the last mapping when the
    /// sample has the same (shared) names.
    fn resolve_metrics(&mut self, cfg: &FleetConfig, s: &Sample) {
        // Each request interns its own layouts, so the next sample of a device usually
        // brings an equal list under another pointer: comparing the names is cheaper than
        // mapping them again.
        if !self.layout.as_ref().is_some_and(|l| l.same(&s.layout) || l.names() == s.layout.names()) {
            self.layout_index = s.layout.names().iter().map(|n| cfg.metric_index(n)).collect();
            self.layout = Some(s.layout.clone());
        }
        self.current.iter_mut().for_each(|c| *c = None);
        for (&v, &mi) in s.values.iter().zip(&self.layout_index) {
            if let (Some(mi), false) = (mi, v.is_nan()) {
                self.current[mi] = Some(v);
            }
        }
    }

    /// Takes the sample into the windows, appends its features to `values` and returns the
    /// rules it fired.
    fn apply_into(&mut self, cfg: &FleetConfig, s: &Sample, values: &mut Vec<f32>) -> Vec<usize> {
        let ts = s.ts.0;
        let mut rules_fired = Vec::new();
        self.resolve_metrics(cfg, s);
        for mi in 0..cfg.metrics.len() {
            self.previous[mi] = None;
            if let Some(x) = self.current[mi] {
                if !self.windows[mi].is_empty() {
                    self.previous[mi] = Some((self.windows[mi].last(), self.metric_ts[mi]));
                }
                self.windows[mi].push(x);
                self.metric_ts[mi] = Some(ts);
            }
        }
        for (ri, rule) in cfg.rules.iter().enumerate() {
            let fired = match rule {
                RuleSpec::Threshold { below, above, .. } => {
                    let mi = cfg.rule_metrics[ri].expect("validated: the rule names a metric");
                    self.current[mi]
                        .is_some_and(|x| below.is_some_and(|b| x < b) || above.is_some_and(|a| x > a))
                }
                RuleSpec::RateOfChange { max_per_hour, .. } => {
                    let mi = cfg.rule_metrics[ri].expect("validated: the rule names a metric");
                    match (self.current[mi], self.previous[mi]) {
                        (Some(x), Some((prev, Some(prev_ts)))) if ts > prev_ts => {
                            let hours = (ts - prev_ts) as f64 / 3_600_000.0;
                            ((x - prev) / hours).abs() > *max_per_hour
                        }
                        _ => false,
                    }
                }
                RuleSpec::FlatLine { samples, .. } => {
                    let mi = cfg.rule_metrics[ri].expect("validated: the rule names a metric");
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
        self.features_into(cfg, values);
        rules_fired
    }

    /// The current feature vector, in [`FleetConfig::features`] order.
    pub fn features(&self, cfg: &FleetConfig) -> Vec<f32> {
        let mut out = Vec::with_capacity(cfg.features.len());
        self.features_into(cfg, &mut out);
        out
    }

    fn features_into(&self, cfg: &FleetConfig, out: &mut Vec<f32>) {
        let start = out.len();
        for f in &cfg.features {
            let v = match f.source {
                FeatureSource::Rolling { metric, stat } => self.windows[metric].stat(stat),
                FeatureSource::Derived { op, left, right } => {
                    // Earlier features of this row, recomputed from the f32 copies.
                    let (a, b) = (out[start + left] as f64, out[start + right] as f64);
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
            out.push(if v.is_finite() { v as f32 } else { f32::NAN });
        }
    }
}

/// Feature rows of many samples, stored column-wise with one row-major value matrix. Device
/// ids and cohorts are stored once and referenced by index.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    /// Distinct devices.
    pub device_names: Vec<Arc<str>>,
    /// Device of each row (index into `device_names`).
    pub device_idx: Vec<u32>,
    /// Distinct cohorts.
    pub cohort_names: Vec<Arc<str>>,
    /// Cohort of each row (index into `cohort_names`, [`NO_COHORT`] when none).
    pub cohort_idx: Vec<u32>,
    /// Time of each row.
    pub ts: Vec<Timestamp>,
    /// Rules fired by each row (indices into [`FleetConfig::rules`]).
    pub rules_fired: Vec<Vec<usize>>,
    /// Feature values, `len() × n_features`, row-major.
    pub values: Vec<f32>,
    /// Features per row.
    pub n_features: usize,
}

/// `cohort_idx` of a row without a cohort.
pub const NO_COHORT: u32 = u32::MAX;

/// A borrowed row of a [`FeatureTable`].
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// Device.
    pub device_id: &'a Arc<str>,
    /// Time.
    pub ts: Timestamp,
    /// Cohort.
    pub cohort: Option<&'a str>,
    /// Feature values.
    pub values: &'a [f32],
    /// Rules fired.
    pub rules_fired: &'a [usize],
}

impl FeatureTable {
    /// Rows.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Cohort of row `i`.
    pub fn cohort(&self, i: usize) -> Option<&str> {
        let c = self.cohort_idx[i];
        (c != NO_COHORT).then(|| &*self.cohort_names[c as usize])
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> RowRef<'_> {
        RowRef {
            device_id: &self.device_names[self.device_idx[i] as usize],
            ts: self.ts[i],
            cohort: self.cohort(i),
            values: &self.values[i * self.n_features..(i + 1) * self.n_features],
            rules_fired: &self.rules_fired[i],
        }
    }

    /// All rows in order.
    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        (0..self.len()).map(|i| self.row(i))
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

/// One device's share of the output: disjoint slices of the table's columns.
struct DeviceOut<'a> {
    samples: &'a [u32],
    ts: &'a mut [Timestamp],
    cohort: &'a mut [u32],
    rules: &'a mut [Vec<usize>],
    values: &'a mut [f32],
}

/// Offline path: all samples of a file through the same per-device state as online ingest,
/// devices in parallel. Rows come out grouped by device (devices in first-seen order), each
/// device's rows in time order. Samples are only borrowed: nothing is copied or freed per
/// sample inside the parallel part.
pub fn extract_all(cfg: &FleetConfig, samples: Vec<Sample>) -> (FeatureTable, Vec<Refused>) {
    let n = samples.len();
    let d = cfg.features.len();
    // Devices and cohorts, numbered in first-seen order.
    let mut device_of: HashMap<&str, u32> = HashMap::new();
    let mut cohort_of: HashMap<&str, u32> = HashMap::new();
    let mut device_names: Vec<Arc<str>> = Vec::new();
    let mut cohort_names: Vec<Arc<str>> = Vec::new();
    let mut sample_device = Vec::with_capacity(n);
    let mut sample_cohort = Vec::with_capacity(n);
    for s in &samples {
        let dev = *device_of.entry(&s.device_id).or_insert_with(|| {
            device_names.push(s.device_id.clone());
            (device_names.len() - 1) as u32
        });
        sample_device.push(dev);
        sample_cohort.push(match &s.cohort {
            None => NO_COHORT,
            Some(c) => *cohort_of.entry(c).or_insert_with(|| {
                cohort_names.push(c.clone());
                (cohort_names.len() - 1) as u32
            }),
        });
    }
    // Counting sort of sample indices by device (stable: input order within a device).
    let n_dev = device_names.len();
    let mut starts = vec![0usize; n_dev + 1];
    for &dev in &sample_device {
        starts[dev as usize + 1] += 1;
    }
    for i in 0..n_dev {
        starts[i + 1] += starts[i];
    }
    let mut order = vec![0u32; n];
    let mut cursor = starts.clone();
    for (i, &dev) in sample_device.iter().enumerate() {
        order[cursor[dev as usize]] = i as u32;
        cursor[dev as usize] += 1;
    }
    // Output columns sized for every sample; each device fills its own range.
    let mut ts = vec![Timestamp(0); n];
    let mut cohort = vec![NO_COHORT; n];
    let mut rules: Vec<Vec<usize>> = (0..n).map(|_| Vec::new()).collect();
    let mut values = vec![0f32; n * d];
    let mut parts: Vec<DeviceOut> = Vec::with_capacity(n_dev);
    {
        let (mut o, mut t, mut c, mut r, mut v) =
            (&order[..], &mut ts[..], &mut cohort[..], &mut rules[..], &mut values[..]);
        for dev in 0..n_dev {
            let k = starts[dev + 1] - starts[dev];
            let (o1, o2) = o.split_at(k);
            let (t1, t2) = std::mem::take(&mut t).split_at_mut(k);
            let (c1, c2) = std::mem::take(&mut c).split_at_mut(k);
            let (r1, r2) = std::mem::take(&mut r).split_at_mut(k);
            let (v1, v2) = std::mem::take(&mut v).split_at_mut(k * d);
            parts.push(DeviceOut { samples: o1, ts: t1, cohort: c1, rules: r1, values: v1 });
            (o, t, c, r, v) = (o2, t2, c2, r2, v2);
        }
    }
    let results: Vec<(usize, Vec<Refused>)> = parts
        .into_par_iter()
        .map(|out| {
            let own = out.samples;
            let mut state = DeviceState::new(cfg);
            // The state's own buffer holds samples (online); offline it re-orders indices.
            let mut reorder: Reorder<u32> = Reorder::new(cfg.tolerance_ms, cfg.max_pending);
            let mut refused = Vec::new();
            let mut ready: Vec<(i64, u32)> = Vec::new();
            let mut row = 0usize;
            let mut current_cohort = NO_COHORT;
            let mut row_values = Vec::with_capacity(d);
            let mut take = |state: &mut DeviceState, ready: &mut Vec<(i64, u32)>, row: &mut usize| {
                for (_, i) in ready.drain(..) {
                    let s = &samples[i as usize];
                    row_values.clear();
                    let fired = state.apply_into(cfg, s, &mut row_values);
                    if sample_cohort[i as usize] != NO_COHORT {
                        current_cohort = sample_cohort[i as usize];
                    }
                    out.ts[*row] = s.ts;
                    out.cohort[*row] = current_cohort;
                    out.rules[*row] = fired;
                    out.values[*row * d..(*row + 1) * d].copy_from_slice(&row_values);
                    *row += 1;
                }
            };
            for &i in own {
                let s = &samples[i as usize];
                match reorder.push(s.ts.0, i, &mut ready) {
                    Ok(()) => take(&mut state, &mut ready, &mut row),
                    Err(reason) => {
                        refused.push(Refused { index: i as usize, device_id: s.device_id.clone(), reason })
                    }
                }
            }
            reorder.flush(&mut ready);
            take(&mut state, &mut ready, &mut row);
            (row, refused)
        })
        .collect();
    // Devices with refused samples leave gaps at the end of their ranges: close them.
    let mut device_idx = Vec::with_capacity(n);
    let mut refused = Vec::new();
    let mut write = 0usize;
    for (dev, (rows, f)) in results.into_iter().enumerate() {
        let start = starts[dev];
        if write != start {
            ts.copy_within(start..start + rows, write);
            cohort.copy_within(start..start + rows, write);
            for k in 0..rows {
                rules.swap(write + k, start + k);
            }
            values.copy_within(start * d..(start + rows) * d, write * d);
        }
        device_idx.extend(std::iter::repeat_n(dev as u32, rows));
        write += rows;
        refused.extend(f);
    }
    ts.truncate(write);
    cohort.truncate(write);
    rules.truncate(write);
    values.truncate(write * d);
    refused.sort_by_key(|r| r.index);
    drop(samples);
    let table = FeatureTable {
        device_names,
        device_idx,
        cohort_names,
        cohort_idx: cohort,
        ts,
        rules_fired: rules,
        values,
        n_features: d,
    };
    (table, refused)
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
        thread_local! {
            static LAYOUT: MetricLayout = MetricLayout::new(vec!["battery".into(), "temp".into()]).unwrap();
        }
        let layout = LAYOUT.with(|l| l.clone());
        let values = vec![battery, temp.unwrap_or(f64::NAN)];
        Sample::new(
            device.into(),
            Timestamp(minute * 60_000),
            layout,
            values,
            Some("c1".into()),
            Default::default(),
        )
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
        let (table, refused) = extract_all(&cfg, samples);
        let rows: Vec<FeatureRow> = table
            .iter()
            .map(|r| FeatureRow {
                device_id: r.device_id.clone(),
                ts: r.ts,
                cohort: r.cohort.map(Arc::from),
                values: r.values.to_vec(),
                rules_fired: r.rules_fired.to_vec(),
            })
            .collect();
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
        let (table, _) = extract_all(&cfg, samples.clone());
        let mut state = DeviceState::new(&cfg);
        let mut online = Vec::new();
        for x in samples {
            state.push(&cfg, x, &mut online).unwrap();
        }
        state.flush(&cfg, &mut online);
        assert_eq!(table.len(), online.len());
        for (a, b) in table.iter().zip(&online) {
            assert_eq!(
                (a.device_id, a.ts, a.values, a.rules_fired),
                (&b.device_id, b.ts, &b.values[..], &b.rules_fired[..])
            );
            assert_eq!(a.cohort, b.cohort.as_deref());
        }
    }
}
