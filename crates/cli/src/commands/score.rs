//! `anomalyd score`: score a table with a saved model.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;

use anomalyd_engine::fleet::{FleetBundle, extract_all};

use super::{InputArgs, load_model};
use crate::input::{InputError, read_table};
use crate::output::{RowFormat, csv_header, write_row};
use crate::progress;
use crate::telemetry_input::read_samples;

/// Arguments of `anomalyd score`.
#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Model file written by `anomalyd train`.
    #[arg(long, short)]
    model: PathBuf,
    #[command(flatten)]
    input: InputArgs,
    /// Raw telemetry to stream through a fleet bundle's features, rules and models; writes
    /// the anomalies as NDJSON.
    #[arg(long, conflicts_with = "input")]
    telemetry: Option<String>,
    /// Samples per device before the model may flag it (its windows are still filling).
    #[arg(long, default_value_t = 24)]
    warmup: usize,
    /// Output file, or `-` for stdout.
    #[arg(long, short, default_value = "-")]
    output: String,
    /// Output format [default: from the output extension, else csv].
    #[arg(long, value_enum)]
    format: Option<RowFormat>,
    /// Add each row's most important features (`top_features`).
    #[arg(long)]
    explain: bool,
    /// Number of features listed per row with --explain.
    #[arg(long, default_value_t = 3)]
    top: usize,
}

/// Rows handed to the engine at a time: bounded memory for the output, parallel inside.
const BATCH_ROWS: usize = 65_536;

/// Runs `anomalyd score`.
pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    if let Some(telemetry) = &args.telemetry {
        return score_telemetry(args, telemetry);
    }
    let model = load_model(&args.model)?;
    // Read the model's features by name unless the user picked columns; other columns
    // (ids, labels) are ignored.
    let mut input = args.input.clone();
    if input.features.is_none() {
        input.features = Some(model.feature_names().to_vec());
    }
    let path = input.path()?;
    let table = read_table(path, input.input_format, &input.selection(None))?;
    if table.names.len() != model.n_features() {
        return Err(InputError(format!(
            "{}: the model expects {} features, {} were selected",
            path,
            model.n_features(),
            table.names.len()
        ))
        .into());
    }
    let format =
        args.format.unwrap_or(if args.output.ends_with(".ndjson") || args.output.ends_with(".jsonl") {
            RowFormat::Ndjson
        } else {
            RowFormat::Csv
        });
    let mut out = open_output(&args.output)?;
    if format == RowFormat::Csv {
        csv_header(&mut out, args.explain)?;
    }
    let n = table.matrix.n_rows();
    let d = table.matrix.n_cols();
    let bar = progress::steps(n as u64, "scoring");
    let explain = args.explain.then_some(args.top);
    for start in (0..n).step_by(BATCH_ROWS) {
        let end = (start + BATCH_ROWS).min(n);
        let chunk = anomalyd_engine::Matrix::new(
            table.matrix.as_slice()[start * d..end * d].to_vec(),
            d,
            &table.names,
        )?;
        for a in model.assess(&chunk, explain)? {
            write_row(&mut out, &a, format, args.explain)?;
        }
        bar.set_position(end as u64);
    }
    bar.finish_and_clear();
    out.flush()?;
    Ok(())
}

fn open_output(path: &str) -> anyhow::Result<BufWriter<Box<dyn Write>>> {
    let sink: Box<dyn Write> = if path == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(File::create(path).with_context(|| format!("cannot create {path}"))?)
    };
    Ok(BufWriter::with_capacity(1 << 16, sink))
}

fn score_telemetry(args: &ScoreArgs, telemetry: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.model)
        .map_err(|e| InputError(format!("{}: cannot read bundle: {e}", args.model.display())))?;
    let bundle =
        FleetBundle::from_bytes(&bytes).map_err(|e| InputError(format!("{}: {e}", args.model.display())))?;
    let samples = read_samples(telemetry, args.input.input_format)?;
    let (rows, refused) = extract_all(&bundle.config, samples);
    for r in &refused {
        eprintln!("warning: {telemetry}: sample {} of device {}: {}", r.index + 1, r.device_id, r.reason);
    }
    let explain = args.explain.then_some(args.top);
    let scores = bundle.score(&rows, explain.or(Some(3)), args.warmup);
    let mut out = open_output(&args.output)?;
    let mut n = 0;
    for (row, s) in rows.iter().zip(&scores) {
        if !s.is_anomaly() {
            continue;
        }
        n += 1;
        let explanation: Vec<_> = s
            .explanation
            .iter()
            .map(|e| {
                serde_json::json!({
                    "feature": e.name, "weight": e.weight, "direction": e.direction.as_str(),
                    "value": finite(e.value), "normal_low": finite(e.normal_low), "normal_high": finite(e.normal_high),
                })
            })
            .collect();
        let obj = serde_json::json!({
            "device_id": &**row.device_id,
            "ts": row.ts.to_rfc3339(),
            "cohort": row.cohort,
            "anomaly_score": s.anomaly_score,
            "grade": s.grade,
            "severity": s.severity.as_str(),
            "detectors": s.detectors,
            "model": s.model,
            "explanation": explanation,
        });
        serde_json::to_writer(&mut out, &obj)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!("{n} anomalies in {} samples ({} refused)", rows.len(), refused.len());
    Ok(())
}

fn finite(v: f32) -> serde_json::Value {
    if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null }
}
