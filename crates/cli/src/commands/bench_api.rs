//! `anomalyd bench-api`: the parts of `bench/load_bench.py` that wrk cannot do.
//!
//! * `seed`: fill a database with N anomalies (and their samples, devices and incidents)
//!   spread over D days and the given devices, through the store's ordinary ingest path.
//! * `ingest`: post unique telemetry in batches from several connections for a fixed time
//!   and report acknowledged samples per second and request latency (wrk would repeat one
//!   body, and a repeated body is only duplicates).
//! * `score-body`: print a `POST /api/v1/score` body for one typical feature vector.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anomalyd_engine::fleet::{FleetBundle, SimParams, extract_all, simulate};
use anomalyd_store::{IngestBatch, NewAnomaly, Store, StoreOptions, TelemetryRow};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Value, json};

use crate::input::InputError;

/// Arguments of `anomalyd bench-api`.
#[derive(Debug, clap::Args)]
pub struct BenchApiArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Fill a fresh database with anomalies for the read benchmarks.
    Seed {
        /// Directory of the SQLite database (`anomalyd.db`).
        #[arg(long)]
        data_dir: PathBuf,
        /// Anomalies to store.
        #[arg(long, default_value_t = 1_000_000)]
        anomalies: u64,
        /// Devices they are spread over.
        #[arg(long, default_value_t = 10_000)]
        devices: u64,
        /// Days of sample time they span (ending at the Unix ms given by --end).
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// End of the span, Unix ms.
        #[arg(long, default_value_t = 1_767_225_600_000)]
        end: i64,
    },
    /// Post unique telemetry batches for a fixed time; print JSON with samples/s.
    Ingest {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Samples per request.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Devices the samples cycle through.
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Sample time of the first round (Unix ms).
        #[arg(long, default_value_t = 1_767_225_600_000)]
        start: i64,
    },
    /// Print a score request body (one typical row of a simulated fleet, features by name).
    ScoreBody {
        /// Bundle whose features the body names.
        #[arg(long)]
        model: PathBuf,
    },
}

/// Runs `anomalyd bench-api …`.
pub fn run(args: &BenchApiArgs) -> anyhow::Result<()> {
    match &args.action {
        Action::Seed { data_dir, anomalies, devices, days, end } => {
            seed(data_dir, *anomalies, *devices, *days, *end)
        }
        Action::Ingest { url, batch, connections, seconds, devices, start } => {
            ingest(url, *batch, *connections, *seconds, *devices, *start)
        }
        Action::ScoreBody { model } => {
            let bytes = std::fs::read(model).map_err(|e| InputError(format!("{}: {e}", model.display())))?;
            let bundle = FleetBundle::from_bytes(&bytes)
                .map_err(|e| InputError(format!("{}: {e}", model.display())))?;
            let (samples, _) =
                simulate(&SimParams { devices: 3, samples: 48, fault_rate: 0.0, ..Default::default() });
            let (table, _) = extract_all(&bundle.config, samples);
            let row = table.row(table.len() - 1);
            let features: serde_json::Map<String, Value> = bundle
                .config
                .features
                .iter()
                .zip(row.values)
                .map(|(f, v)| (f.name.clone(), json!(v)))
                .collect();
            println!("{}", json!({"features": features, "cohort": row.cohort}));
            Ok(())
        }
    }
}

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const COHORTS: [&str; 10] = [
    "tc52/android-11",
    "tc52/android-13",
    "tc57/android-11",
    "tc57/android-13",
    "et40/android-11",
    "et40/android-13",
    "mc93/android-11",
    "mc93/android-13",
    "zq630/android-11",
    "zq630/android-13",
];

fn seed(dir: &std::path::Path, anomalies: u64, devices: u64, days: i64, end: i64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| InputError(format!("{}: {e}", dir.display())))?;
    let url = format!("sqlite://{}", dir.join("anomalyd.db").display());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = Store::open(&url, &StoreOptions::default()).await?;
        let span = days * 86_400_000;
        let step = (span / anomalies.max(1) as i64).max(1);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let started = Instant::now();
        let mut batch = IngestBatch::default();
        for i in 0..anomalies {
            let device = format!("dev-{:05}", i % devices.max(1));
            let cohort = COHORTS[(i % devices.max(1) % COHORTS.len() as u64) as usize];
            let ts = end - span + i as i64 * step;
            let score: f64 = rng.random_range(0.5..0.8);
            // The sample holds the flagged value, so evidence and history show what was flagged.
            let metric = ["battery_temp_c", "cpu_pct", "mem_pct"][(i % 3) as usize];
            let mut metrics = json!({"battery_temp_c": 32.0, "cpu_pct": 30.0, "mem_pct": 30.0});
            metrics[metric] = json!(score * 100.0);
            batch.telemetry.push(TelemetryRow {
                device_id: device.clone(),
                ts,
                cohort: Some(cohort.into()),
                labels: json!({"firmware": format!("4.{}", i % devices.max(1) % 5), "site": format!("site-{}", i % 7)}).to_string(),
                metrics: metrics.to_string(),
            });
            batch.anomalies.push(NewAnomaly {
                device_id: device,
                ts,
                cohort: Some(cohort.into()),
                anomaly_score: score,
                grade: 0.95 + score / 20.0,
                severity: SEVERITIES[rng.random_range(0..4)].into(),
                detectors: vec!["model".into()],
                model_version: Some("seed/global".into()),
                features: json!({format!("{metric}.last"): score * 100.0}),
                explanation: json!([{"feature": format!("{metric}.last"), "weight": 1.0, "direction": "above",
                                     "value": score * 100.0, "normal_low": 20.0, "normal_high": 40.0}]),
                signature: format!("model|{metric}"),
                evidence_metrics: vec![metric.into()],
            });
            if batch.anomalies.len() == 20_000 || i + 1 == anomalies {
                store.ingest(&batch, anomalyd_service::now_ms()).await?;
                store.compact_device_index(100_000).await?;
                batch = IngestBatch::default();
                eprint!("\rseed: {} of {anomalies} anomalies ({:.0} s)", i + 1, started.elapsed().as_secs_f64());
            }
        }
        eprintln!();
        store.close().await;
        Ok(())
    })
}

/// Body of request number `k`: devices `(k % rounds_per_hour) * batch ..` at hour `k / rounds`.
fn ingest_body(k: usize, batch: usize, devices: usize, start: i64) -> String {
    let per_round = devices.div_ceil(batch).max(1);
    let hour = (k / per_round) as i64;
    let first = (k % per_round) * batch;
    let mut out = String::with_capacity(batch * 230);
    out.push('[');
    for j in 0..batch {
        let d = (first + j) % devices;
        if j > 0 {
            out.push(',');
        }
        // Smooth, healthy values: small hourly changes that trip no rule (a benchmark of the
        // normal path; anomalies are about 1 % of real traffic).
        let wobble = ((d as i64 * 7 + hour) % 3) as f64;
        out.push_str(&format!(
            "{{\"device_id\":\"dev-{d:05}\",\"ts\":{},\"cohort\":\"{}\",\"metrics\":{{\"battery_pct\":{:.1},\"battery_temp_c\":{:.1},\"cpu_pct\":{:.1},\"mem_pct\":{:.1},\"app_crashes\":0,\"signal_dbm\":{:.1}}}}}",
            start + hour * 3_600_000,
            COHORTS[d % COHORTS.len()],
            60.0 + wobble,
            33.0 + wobble / 4.0,
            20.0 + wobble,
            50.0 + wobble / 2.0,
            -70.0 - wobble
        ));
    }
    out.push(']');
    out
}

fn ingest(
    url: &str,
    batch: usize,
    connections: usize,
    seconds: f64,
    devices: usize,
    start: i64,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async {
        // Bodies are built before the clock starts, enough for the run at 1M samples/s.
        let max_requests = ((seconds * 1_000_000.0) as usize / batch).clamp(100, 20_000);
        let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
            (0..max_requests).map(|k| bytes::Bytes::from(ingest_body(k, batch, devices, start))).collect(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (client, bodies, next, acked) = (client.clone(), bodies.clone(), next.clone(), acked.clone());
            let url = format!("{url}/api/v1/telemetry");
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(k) else { break };
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let v: Value = r.json().await.unwrap_or(Value::Null);
                            acked.fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                            latencies.push(t.elapsed().as_secs_f64());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await?;
            latencies.extend(l);
            errors += e;
        }
        let wall = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        let samples = acked.load(Ordering::Relaxed);
        println!(
            "{}",
            json!({
                "samples_acknowledged": samples,
                "seconds": wall,
                "samples_per_sec": samples as f64 / wall,
                "requests": latencies.len(),
                "errors": errors,
                "batch": batch,
                "connections": connections,
                "latency_p50_ms": pct(0.50) * 1e3,
                "latency_p99_ms": pct(0.99) * 1e3,
            })
        );
        Ok(())
    })
}
