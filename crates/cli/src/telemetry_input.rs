//! Reading raw telemetry (CSV, NDJSON, Parquet) into validated samples.
//!
//! CSV and Parquet: columns `device_id`, `ts`, optional `cohort`, optional `label.<name>`
//! columns (device attributes), and one column per metric (empty = not reported). NDJSON:
//! one sample object per line, `{"device_id", "ts", "metrics": {…}, "cohort", "labels": {…}}`;
//! unknown fields are rejected. Errors name the file, the row and the field.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;

use anomalyd_engine::fleet::{Labels, MetricLayout, Sample, Timestamp};
use serde::Deserialize;

use crate::input::{InputError, InputFormat, open};

fn err<T>(msg: String) -> anyhow::Result<T> {
    Err(InputError(msg).into())
}

/// Reads every sample of `path` (`-` = CSV on stdin).
pub fn read_samples(path: &str, format: Option<InputFormat>) -> anyhow::Result<Vec<Sample>> {
    let format = match format {
        Some(f) => f,
        None => InputFormat::from_path(path)?,
    };
    let file = if path == "-" { "<stdin>".to_string() } else { path.to_string() };
    match format {
        InputFormat::Csv => {
            let (reader, bar) = open(path)?;
            let out = read_csv(reader, &file);
            bar.finish_and_clear();
            out
        }
        InputFormat::Ndjson => {
            let (reader, bar) = open(path)?;
            let out = read_ndjson(reader, &file);
            bar.finish_and_clear();
            out
        }
        InputFormat::Parquet => crate::parquet_input::read_samples(std::path::Path::new(path), &file),
    }
}

/// Hands out one shared copy of each distinct string (device ids, cohorts) and of each
/// device's labels, so that millions of samples do not each allocate their own.
#[derive(Default)]
pub(crate) struct Interner {
    strings: HashMap<String, Arc<str>>,
    labels: HashMap<Arc<str>, Labels>,
    layouts: HashMap<Vec<String>, MetricLayout>,
}

impl Interner {
    pub(crate) fn string(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(s.to_string(), a.clone());
        a
    }

    /// The shared layout for these metric names (validated the first time they are seen).
    pub(crate) fn layout(&mut self, names: &[&str]) -> Result<MetricLayout, String> {
        let key: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        if let Some(l) = self.layouts.get(&key) {
            return Ok(l.clone());
        }
        let layout =
            MetricLayout::new(names.iter().map(|n| self.string(n)).collect()).map_err(|e| e.to_string())?;
        self.layouts.insert(key, layout.clone());
        Ok(layout)
    }

    pub(crate) fn labels(&mut self, device: &Arc<str>, labels: BTreeMap<String, String>) -> Labels {
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

/// Column roles of a telemetry table.
pub(crate) struct Columns {
    device: usize,
    ts: usize,
    cohort: Option<usize>,
    labels: Vec<(usize, String)>,
    metrics: Vec<(usize, Arc<str>)>,
    layout: MetricLayout,
}

impl Columns {
    pub(crate) fn resolve(header: &[String], file: &str) -> anyhow::Result<Self> {
        let find = |n: &str| header.iter().position(|h| h == n);
        let (Some(device), Some(ts)) = (find("device_id"), find("ts")) else {
            return err(format!(
                "{file}: telemetry needs `device_id` and `ts` columns; found: {}",
                header.join(", ")
            ));
        };
        let cohort = find("cohort");
        let mut labels = Vec::new();
        let mut metrics = Vec::new();
        for (i, h) in header.iter().enumerate() {
            if i == device || i == ts || Some(i) == cohort {
                continue;
            }
            match h.strip_prefix("label.") {
                Some(l) => labels.push((i, l.to_string())),
                None => metrics.push((i, Arc::from(h.as_str()))),
            }
        }
        if metrics.is_empty() {
            return err(format!("{file}: no metric columns besides device_id, ts and cohort"));
        }
        let layout = MetricLayout::new(metrics.iter().map(|(_, n): &(usize, Arc<str>)| n.clone()).collect())
            .map_err(|e| InputError(format!("{file}: header: {e}")))?;
        Ok(Self { device, ts, cohort, labels, metrics, layout })
    }

    /// Builds a sample from one row of text cells.
    pub(crate) fn sample(
        &self,
        cell: impl Fn(usize) -> Option<String>,
        interner: &mut Interner,
        file: &str,
        row: usize,
    ) -> anyhow::Result<Sample> {
        let device = cell(self.device).unwrap_or_default();
        let ts_text = cell(self.ts).unwrap_or_default();
        let ts = Timestamp::parse(&ts_text).map_err(|e| InputError(format!("{file}: row {row}: {e}")))?;
        let mut metrics = Vec::with_capacity(self.metrics.len());
        for (i, name) in &self.metrics {
            let text = cell(*i).unwrap_or_default();
            let t = text.trim();
            if t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("na") || t == "null" {
                metrics.push(f64::NAN);
                continue;
            }
            match t.parse::<f64>() {
                Ok(v) if v.is_finite() => metrics.push(v),
                _ => {
                    return err(format!(
                        "{file}: row {row}, field `metrics.{name}`: `{t}` is not a finite number"
                    ));
                }
            }
        }
        let labels: BTreeMap<String, String> = self
            .labels
            .iter()
            .filter_map(|(i, l)| cell(*i).filter(|v| !v.is_empty()).map(|v| (l.clone(), v)))
            .collect();
        let device = interner.string(&device);
        let labels = interner.labels(&device, labels);
        let cohort = self.cohort.and_then(&cell).filter(|c| !c.is_empty()).map(|c| interner.string(&c));
        Sample::new(device, ts, self.layout.clone(), metrics, cohort, labels)
            .map_err(|e| InputError(format!("{file}: row {row}: {e}")).into())
    }
}

fn read_csv(reader: Box<dyn BufRead>, file: &str) -> anyhow::Result<Vec<Sample>> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header: Vec<String> = match rdr.headers() {
        Ok(h) if !(h.len() == 1 && h[0].trim().is_empty()) => {
            h.iter().map(|s| s.trim().to_string()).collect()
        }
        Ok(_) => return err(format!("{file}: the file is empty (no header row)")),
        Err(e) => return err(format!("{file}: cannot read the header: {e}")),
    };
    let cols = Columns::resolve(&header, file)?;
    let mut out = Vec::new();
    let mut interner = Interner::default();
    let mut record = csv::StringRecord::new();
    let mut row = 0;
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return err(format!("{file}: row {}: {e}", row + 1)),
        }
        row += 1;
        if record.len() != header.len() {
            return err(format!(
                "{file}: row {row}: expected {} fields like the header, found {}",
                header.len(),
                record.len()
            ));
        }
        out.push(cols.sample(|i| record.get(i).map(str::to_string), &mut interner, file, row)?);
    }
    if out.is_empty() {
        return err(format!("{file}: no data rows"));
    }
    Ok(out)
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
pub(crate) fn sample_from_json(value: serde_json::Value, interner: &mut Interner) -> Result<Sample, String> {
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

fn read_ndjson(reader: Box<dyn BufRead>, file: &str) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    let mut interner = Interner::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| InputError(format!("{file}: line {}: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| InputError(format!("{file}: row {}: malformed JSON: {e}", n + 1)))?;
        out.push(
            sample_from_json(value, &mut interner)
                .map_err(|e| InputError(format!("{file}: row {}: {e}", n + 1)))?,
        );
    }
    if out.is_empty() {
        return err(format!("{file}: the file is empty (no JSON rows)"));
    }
    Ok(out)
}
