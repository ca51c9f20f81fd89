//! `anomalyd simulate`: a deterministic simulated fleet with labelled faults.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anomalyd_engine::fleet::simulate::METRICS;
use anomalyd_engine::fleet::{SimParams, simulate};
use anyhow::Context;

use super::write_atomic;
use crate::input::{InputError, InputFormat};

/// Arguments of `anomalyd simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Devices in the fleet (10 cohorts: 5 models × 2 OS versions).
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Samples per device, one per interval.
    #[arg(long, default_value_t = 720)]
    samples: usize,
    /// Seed; the same seed gives the same fleet.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of devices with an injected fault.
    #[arg(long, default_value_t = 0.1)]
    fault_rate: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 3600)]
    interval_secs: i64,
    /// Telemetry output: .csv, .ndjson/.jsonl or .parquet.
    #[arg(long, short)]
    output: PathBuf,
    /// Fault labels (CSV: device_id,kind,start,end).
    #[arg(long)]
    labels: Option<PathBuf>,
}

/// Runs `anomalyd simulate`.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.fault_rate)
        || args.devices == 0
        || args.samples == 0
        || args.interval_secs <= 0
    {
        return Err(InputError(
            "--devices, --samples and --interval-secs must be positive, --fault-rate in [0, 1]".into(),
        )
        .into());
    }
    let params = SimParams {
        devices: args.devices,
        samples: args.samples,
        seed: args.seed,
        fault_rate: args.fault_rate,
        interval_secs: args.interval_secs,
        ..Default::default()
    };
    let (samples, episodes) = simulate(&params);
    let out = args.output.to_string_lossy().to_string();
    let bytes = match InputFormat::from_path(&out)? {
        InputFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut header = vec!["device_id", "ts", "cohort"];
            header.extend(METRICS);
            header.extend(["label.model", "label.os", "label.site", "label.firmware"]);
            w.write_record(&header)?;
            for s in &samples {
                let mut rec = vec![
                    s.device_id.to_string(),
                    s.ts.to_rfc3339(),
                    s.cohort.as_deref().unwrap_or("").to_string(),
                ];
                rec.extend(
                    METRICS.iter().map(|m| s.metric(m).map(|v| format!("{v:.3}")).unwrap_or_default()),
                );
                rec.extend(
                    ["model", "os", "site", "firmware"]
                        .iter()
                        .map(|l| s.labels.get(*l).cloned().unwrap_or_default()),
                );
                w.write_record(&rec)?;
            }
            w.into_inner().context("flushing CSV")?
        }
        InputFormat::Ndjson => {
            let mut buf = Vec::new();
            for s in &samples {
                let metrics: serde_json::Map<String, serde_json::Value> = s
                    .metrics()
                    .map(|(k, v)| (k.to_string(), serde_json::json!((v * 1000.0).round() / 1000.0)))
                    .collect();
                serde_json::to_writer(
                    &mut buf,
                    &serde_json::json!({
                        "device_id": &*s.device_id, "ts": s.ts.to_rfc3339(), "metrics": metrics,
                        "cohort": s.cohort.as_deref(), "labels": &*s.labels,
                    }),
                )?;
                buf.push(b'\n');
            }
            buf
        }
        InputFormat::Parquet => parquet_bytes(&samples)?,
    };
    write_atomic(&args.output, &bytes)?;
    if let Some(path) = &args.labels {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["device_id", "kind", "start", "end"])?;
        for e in &episodes {
            w.write_record([
                e.device_id.to_string(),
                e.kind.as_str().to_string(),
                e.start.to_rfc3339(),
                e.end.to_rfc3339(),
            ])?;
        }
        write_atomic(path, &w.into_inner().context("flushing labels")?)?;
    }
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "simulated {} devices × {} samples = {} samples with {} fault episodes; wrote {}",
        args.devices,
        args.samples,
        samples.len(),
        episodes.len(),
        args.output.display()
    )?;
    Ok(())
}

fn parquet_bytes(samples: &[anomalyd_engine::fleet::Sample]) -> anyhow::Result<Vec<u8>> {
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let mut fields = String::from(
        "REQUIRED BYTE_ARRAY device_id (UTF8); REQUIRED INT64 ts; OPTIONAL BYTE_ARRAY cohort (UTF8); ",
    );
    for m in METRICS {
        fields.push_str(&format!("OPTIONAL DOUBLE {m}; "));
    }
    let schema = Arc::new(parse_message_type(&format!("message telemetry {{ {fields} }}"))?);
    let mut buf = Vec::new();
    let mut writer =
        SerializedFileWriter::new(&mut buf, schema, Arc::new(WriterProperties::builder().build()))?;
    let mut group = writer.next_row_group()?;
    let mut col = 0;
    while let Some(mut c) = group.next_column()? {
        match col {
            0 => {
                let v: Vec<ByteArray> = samples.iter().map(|s| ByteArray::from(&*s.device_id)).collect();
                c.typed::<ByteArrayType>().write_batch(&v, None, None)?;
            }
            1 => {
                let v: Vec<i64> = samples.iter().map(|s| s.ts.0).collect();
                c.typed::<Int64Type>().write_batch(&v, None, None)?;
            }
            2 => {
                let defs: Vec<i16> = samples.iter().map(|s| i16::from(s.cohort.is_some())).collect();
                let v: Vec<ByteArray> =
                    samples.iter().filter_map(|s| s.cohort.as_deref().map(ByteArray::from)).collect();
                c.typed::<ByteArrayType>().write_batch(&v, Some(&defs), None)?;
            }
            k => {
                let m = METRICS[k - 3];
                let defs: Vec<i16> = samples.iter().map(|s| i16::from(s.metric(m).is_some())).collect();
                let v: Vec<f64> = samples.iter().filter_map(|s| s.metric(m)).collect();
                c.typed::<DoubleType>().write_batch(&v, Some(&defs), None)?;
            }
        }
        c.close()?;
        col += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(buf)
}
