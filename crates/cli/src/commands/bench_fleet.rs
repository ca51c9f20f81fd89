//! `anomalyd bench-fleet`: in-process timings of the fleet pipeline, printed as JSON.
//! `bench/fleet_bench.py` runs it next to pandas; see `bench/README.md`.
//!
//! * `--rolling FILE`: rolling mean and standard deviation of every metric of every device,
//!   with the same [`Window`] code the pipeline uses, devices in parallel. FILE holds raw
//!   little-endian `f64` values, device-major: device 0's samples (each `--metrics` values),
//!   then device 1's, … (numpy `astype('<f8').tofile()` of a devices × samples × metrics array).
//!   Results are written as `f32`, the precision of the pipeline's features.
//! * `--train`: simulate a fleet (untimed), then time raw samples → features → global and
//!   cohort models (with calibration) → bundle bytes → file.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use anomalyd_engine::fleet::rolling::Window;
use anomalyd_engine::fleet::{FleetBundle, SimParams, Stat, extract_all, simulate};
use anyhow::{Context, ensure};
use rayon::prelude::*;
use serde_json::json;

use super::train::load_config;

/// Arguments of `anomalyd bench-fleet`.
#[derive(Debug, clap::Args)]
pub struct BenchFleetArgs {
    /// Raw f64 metrics file for the rolling-statistics benchmark (device-major).
    #[arg(long)]
    rolling: Option<PathBuf>,
    /// Devices in the rolling file, or in the simulated fleet with --train.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Samples per device.
    #[arg(long, default_value_t = 720)]
    samples: usize,
    /// Metrics per sample in the rolling file.
    #[arg(long, default_value_t = 5)]
    metrics: usize,
    /// Rolling window in samples.
    #[arg(long, default_value_t = 24)]
    window: usize,
    /// Time a whole fleet training run on a simulated fleet.
    #[arg(long)]
    train: bool,
    /// Feature configuration for --train.
    #[arg(long, default_value = "config/fleet.toml")]
    config: PathBuf,
    /// Where --train writes the bundle.
    #[arg(long, default_value = "/tmp/anomalyd-bench-fleet.bundle")]
    output: PathBuf,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `anomalyd bench-fleet`.
pub fn run(args: &BenchFleetArgs) -> anyhow::Result<()> {
    let mut report = serde_json::Map::new();
    report.insert("threads".into(), json!(rayon::current_num_threads()));
    if let Some(path) = &args.rolling {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let per_device = args.samples * args.metrics;
        ensure!(
            bytes.len() == args.devices * per_device * 8,
            "{}: expected devices × samples × metrics f64 values",
            path.display()
        );
        let data: Vec<f64> =
            bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        // Features are f32 in the pipeline (model input), so the outputs are too.
        let mut means = vec![0f32; data.len()];
        let mut stds = vec![0f32; data.len()];
        let stats = [Stat::Mean, Stat::Std];
        let mut times = Vec::new();
        for _ in 0..=args.repeat {
            let start = Instant::now();
            data.par_chunks(per_device)
                .zip(means.par_chunks_mut(per_device).zip(stds.par_chunks_mut(per_device)))
                .for_each(|(dev, (mean, std))| {
                    let mut windows: Vec<Window> =
                        (0..args.metrics).map(|_| Window::with_stats(args.window, 0.3, &stats)).collect();
                    for ((xs, ms), ss) in dev
                        .chunks_exact(args.metrics)
                        .zip(mean.chunks_exact_mut(args.metrics))
                        .zip(std.chunks_exact_mut(args.metrics))
                    {
                        for (((w, &x), m), s) in windows.iter_mut().zip(xs).zip(ms).zip(ss) {
                            w.push(x);
                            *m = w.stat(Stat::Mean) as f32;
                            *s = w.stat(Stat::Std) as f32;
                        }
                    }
                });
            times.push(start.elapsed().as_secs_f64());
            black_box((&means, &stds));
        }
        times.remove(0); // warm-up
        // Checksums let the Python side check the numbers against pandas.
        let sum = |v: &[f32]| v.iter().filter(|x| !x.is_nan()).map(|&x| f64::from(x)).sum::<f64>();
        report.insert(
            "rolling".into(),
            json!({
                "devices": args.devices, "samples": args.samples, "metrics": args.metrics, "window": args.window,
                "median_s": median(times.clone()), "times_s": times,
                "sum_mean": sum(&means), "sum_std": sum(&stds),
                "nan_std": stds.iter().filter(|x| x.is_nan()).count(),
                "probe": [means[per_device * 7 + 100], stds[per_device * 7 + 100]],
            }),
        );
    }
    if args.train {
        let config = load_config(&args.config)?;
        let mut runs = Vec::new();
        for _ in 0..args.repeat.max(1) {
            let (samples, _) = simulate(&SimParams {
                devices: args.devices,
                samples: args.samples,
                seed: 1,
                ..Default::default()
            });
            let n = samples.len();
            let t0 = Instant::now();
            let (table, refused) = extract_all(&config, samples);
            let features_s = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let bundle = FleetBundle::train(config.clone(), &table)?;
            let train_s = t1.elapsed().as_secs_f64();
            let t2 = Instant::now();
            let bytes = bundle.to_bytes();
            std::fs::write(&args.output, &bytes)?;
            let save_s = t2.elapsed().as_secs_f64();
            runs.push(json!({
                "samples": n, "rows": table.len(), "refused": refused.len(), "cohort_models": bundle.cohorts.len(),
                "features_s": features_s, "train_s": train_s, "save_s": save_s,
                "total_s": t0.elapsed().as_secs_f64(), "bundle_bytes": bytes.len(),
            }));
        }
        let total = median(runs.iter().map(|r| r["total_s"].as_f64().unwrap_or(f64::NAN)).collect());
        report.insert("train".into(), json!({"median_total_s": total, "runs": runs}));
    }
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}
