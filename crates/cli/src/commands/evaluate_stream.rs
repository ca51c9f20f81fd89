//! `anomalyd evaluate-stream`: how a streaming detector does on a labelled time series.
//!
//! The series (NAB format: `timestamp,value`) becomes the telemetry of one device with one
//! metric, `value`. Its rolling features are computed exactly as for a fleet, a model is
//! trained on the series itself (unsupervised: labels are only used to evaluate), and every
//! point is scored. A labelled window counts as detected when at least one anomaly falls
//! inside it; every anomaly outside all windows is a false alarm.

use std::path::PathBuf;

use anomalyd_engine::fleet::{FleetBundle, FleetConfig, Sample, Timestamp, extract_all};
use serde_json::json;

use super::train::load_config;
use crate::input::InputError;
use crate::output::{OutputFormat, print};

/// The default configuration for a univariate series: the eight rolling statistics over 24
/// points, 200 trees, and a threshold that flags 0.4 % of the training points. (Chosen on the
/// six NAB series in `testdata/nab`, which the tests also use — see the README.)
pub const SERIES_CONFIG: &str = r#"
[[metrics]]
name = "value"
window = 24
stats = ["mean", "std", "min", "max", "last", "delta", "ewma", "zscore"]

[model]
trees = 200
seed = 7
contamination = 0.004
"#;

/// Arguments of `anomalyd evaluate-stream`.
#[derive(Debug, clap::Args)]
pub struct EvaluateStreamArgs {
    /// Series CSV with a header `timestamp,value`.
    #[arg(long, short)]
    input: PathBuf,
    /// Labelled windows: NAB JSON `{"<key>": [["start", "end"], …]}`.
    #[arg(long)]
    windows: PathBuf,
    /// Feature configuration with one metric named `value` [default: built in].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Points before the model may raise an anomaly.
    #[arg(long, default_value_t = 24)]
    warmup: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

fn input_err(msg: String) -> anyhow::Error {
    InputError(msg).into()
}

/// Reads a NAB series as (time, value) pairs.
fn read_series(path: &std::path::Path) -> anyhow::Result<Vec<(Timestamp, f64)>> {
    let file = path.display().to_string();
    let mut rdr = csv::Reader::from_path(path).map_err(|e| input_err(format!("{file}: cannot open: {e}")))?;
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| input_err(format!("{file}: row {}: {e}", i + 1)))?;
        let (Some(t), Some(v)) = (rec.get(0), rec.get(1)) else {
            return Err(input_err(format!("{file}: row {}: expected `timestamp,value`", i + 1)));
        };
        let ts = Timestamp::parse(t).map_err(|e| input_err(format!("{file}: row {}: {e}", i + 1)))?;
        let v: f64 = v.trim().parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(|| {
            input_err(format!("{file}: row {}, column `value`: `{v}` is not a finite number", i + 1))
        })?;
        out.push((ts, v));
    }
    if out.is_empty() {
        return Err(input_err(format!("{file}: no data rows")));
    }
    Ok(out)
}

/// Reads the windows of the (only) series in a NAB windows file.
fn read_windows(path: &std::path::Path) -> anyhow::Result<Vec<(Timestamp, Timestamp)>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| input_err(format!("{file}: cannot read: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| input_err(format!("{file}: malformed JSON: {e}")))?;
    let windows = json
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v.as_array())
        .ok_or_else(|| input_err(format!("{file}: expected {{\"<series>\": [[start, end], …]}}")))?;
    windows
        .iter()
        .map(|w| {
            let pair = w
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| input_err(format!("{file}: a window is not [start, end]")))?;
            let t = |v: &serde_json::Value| {
                v.as_str()
                    .ok_or_else(|| input_err(format!("{file}: window bounds must be strings")))
                    .and_then(|s| Timestamp::parse(s).map_err(|e| input_err(format!("{file}: {e}"))))
            };
            Ok((t(&pair[0])?, t(&pair[1])?))
        })
        .collect()
}

/// Runs `anomalyd evaluate-stream`.
pub fn run(args: &EvaluateStreamArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(p) => load_config(p)?,
        None => FleetConfig::from_toml(SERIES_CONFIG).expect("built-in config is valid"),
    };
    if config.metric_index("value").is_none() {
        return Err(input_err("the configuration must declare a metric named `value`".into()));
    }
    let series = read_series(&args.input)?;
    let windows = read_windows(&args.windows)?;
    let name = args.input.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let device: std::sync::Arc<str> = name.as_str().into();
    let layout = anomalyd_engine::fleet::MetricLayout::new(vec!["value".into()]).expect("one name");
    let samples: Vec<Sample> = series
        .iter()
        .map(|&(ts, v)| Sample::new(device.clone(), ts, layout.clone(), vec![v], None, Default::default()))
        .collect::<Result<_, _>>()
        .map_err(|e| input_err(format!("{}: {e}", args.input.display())))?;
    let (rows, refused) = extract_all(&config, samples);
    let bundle = FleetBundle::train(config, &rows)?;
    let scores = bundle.score(&rows, None, args.warmup);
    let inside = |ts: Timestamp| windows.iter().any(|&(a, b)| ts >= a && ts <= b);
    let mut detected = vec![false; windows.len()];
    let (mut false_alarms, mut outside) = (0usize, 0usize);
    for (row, s) in rows.iter().zip(&scores) {
        if !inside(row.ts) {
            outside += 1;
        }
        if !s.is_anomaly() {
            continue;
        }
        match windows.iter().position(|&(a, b)| row.ts >= a && row.ts <= b) {
            Some(w) => detected[w] = true,
            None => false_alarms += 1,
        }
    }
    let windows_detected = detected.iter().filter(|&&d| d).count();
    let per_1000 = if outside == 0 { 0.0 } else { false_alarms as f64 * 1000.0 / outside as f64 };
    match args.format {
        OutputFormat::Json => print(&format!(
            "{}\n",
            json!({
                "series": name,
                "points": rows.len(),
                "windows_total": windows.len(),
                "windows_detected": windows_detected,
                "false_alarms": false_alarms,
                "false_alarms_per_1000": per_1000,
            })
        ))?,
        OutputFormat::Text => print(&format!(
            "{name}: {} points ({} refused), windows detected {windows_detected}/{}, false alarms {false_alarms} ({per_1000:.2} per 1000 points outside windows)\n",
            rows.len(),
            refused.len(),
            windows.len()
        ))?,
    }
    Ok(())
}
