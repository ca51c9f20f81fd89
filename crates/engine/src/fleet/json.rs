//! Telemetry samples from JSON objects — the format of NDJSON files and of the HTTP ingest
//! API: `{"device_id", "ts", "metrics": {…}, "cohort", "labels": {…}}`, unknown fields
//! rejected, errors naming the field.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use super::sample::{Labels, MetricLayout, Sample, Timestamp};

/// Hands out one shared copy of each distinct string (device ids, cohorts) and of each
/// device's labels, so that millions of samples do not each allocate their own.
#[derive(Default)]
pub struct Interner {
    strings: HashMap<String, Arc<str>>,
    labels: HashMap<Arc<str>, Labels>,
    layouts: HashMap<Vec<String>, MetricLayout>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn string(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(s.to_string(), a.clone());
        a
    }

    /// The shared layout for these metric names (validated the first time they are seen).
    pub fn layout(&mut self, names: &[&str]) -> Result<MetricLayout, String> {
        let key: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        if let Some(l) = self.layouts.get(&key) {
            return Ok(l.clone());
        }
        let layout =
            MetricLayout::new(names.iter().map(|n| self.string(n)).collect()).map_err(|e| e.to_string())?;
        self.layouts.insert(key, layout.clone());
        Ok(layout)
    }

    /// The device's labels from (key, value) pairs; allocates only when they changed.
    pub fn labels_from<'a>(
        &mut self,
        device: &Arc<str>,
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Labels {
        if let Some(l) = self.labels.get(device) {
            let same = l.len() == pairs.clone().count()
                && pairs.clone().all(|(k, v)| l.get(k).is_some_and(|x| x == v));
            if same {
                return l.clone();
            }
        }
        let map: BTreeMap<String, String> = pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.labels(device, map)
    }

    /// The device's labels, reusing the previous copy when they are unchanged.
    pub fn labels(&mut self, device: &Arc<str>, labels: BTreeMap<String, String>) -> Labels {
        match self.labels.get(device) {
            Some(l) if **l == labels => l.clone(),
            _ => {
                let l = Arc::new(labels);
                self.labels.insert(device.clone(), l.clone());
                l
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSample {
    device_id: String,
    ts: serde_json::Value,
    metrics: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    cohort: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Validates one JSON sample object (shared by NDJSON files and, later, the HTTP API).
pub fn sample_from_json(value: serde_json::Value, interner: &mut Interner) -> Result<Sample, String> {
    let s: JsonSample = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let ts = match &s.ts {
        serde_json::Value::Number(n) => {
            n.as_i64().map(Timestamp).ok_or("field `ts`: expected integer milliseconds")?
        }
        serde_json::Value::String(t) => Timestamp::parse(t).map_err(|e| e.to_string())?,
        _ => return Err("field `ts`: expected an RFC 3339 string or integer milliseconds".into()),
    };
    let names: Vec<&str> = s.metrics.keys().map(String::as_str).collect();
    let layout = interner.layout(&names)?;
    let mut metrics = Vec::with_capacity(s.metrics.len());
    for (k, v) in &s.metrics {
        match v.as_f64() {
            Some(x) if x.is_finite() => metrics.push(x),
            _ => return Err(format!("field `metrics.{k}`: expected a finite number, found {v}")),
        }
    }
    let device = interner.string(&s.device_id);
    let labels = interner.labels(&device, s.labels);
    let cohort = s.cohort.map(|c| interner.string(&c));
    Sample::new(device, ts, layout, metrics, cohort, labels).map_err(|e| e.to_string())
}
