//! Writer cost probe: microseconds per sample of `Store::ingest` (and of moving the samples
//! into their per-device runs, as the server does every 800 000 samples) on a fresh database, a fleet
//! sending one sample per device per interval.
//!
//! `cargo run --release -p anomalyd-store --example ingest_cost -- DIR [batches] [batch] [devices]`

use std::time::Instant;

use anomalyd_store::{IngestBatch, Store, StoreOptions, TelemetryRow};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: ingest_cost DIR [batches=250] [batch=4000] [devices=10000]");
        std::process::exit(2);
    };
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |s| s.parse().expect("a number"));
    let (batches, batch, devices) = (arg(2, 250), arg(3, 4000), arg(4, 10_000));
    std::fs::create_dir_all(&dir).expect("creating DIR");
    let url = format!("sqlite://{}", dir.join("anomalyd.db").display());
    let options = StoreOptions { background_checkpoint: true, ..Default::default() };
    let store = Store::open(&url, &options).await.expect("opening the store");
    let (mut k, mut since) = (0usize, 0u64);
    let (mut ingest_s, mut compact_s, mut samples) = (0f64, 0f64, 0u64);
    for b in 0..batches {
        let telemetry = (0..batch)
            .map(|_| {
                let d = k % devices;
                k += 1;
                TelemetryRow {
                    device_id: format!("dev-{d:05}"),
                    ts: 1_700_000_000_000 + (k / devices) as i64 * 10_000 + d as i64,
                    cohort: Some("scanner".into()),
                    labels: String::new(),
                    metrics: format!(
                        r#"{{"battery_pct":{:.1},"battery_temp_c":31.5,"cpu_pct":{:.1},"mem_pct":40.2,"app_crashes":0,"signal_dbm":-71.0}}"#,
                        (k % 97) as f64,
                        (k % 89) as f64
                    ),
                }
            })
            .collect();
        let t = Instant::now();
        let out = store.ingest(&IngestBatch { telemetry, ..Default::default() }, 0).await.expect("ingest");
        // The first batches create the devices; the steady state is what a server sees.
        let warm = b >= 5;
        if warm {
            ingest_s += t.elapsed().as_secs_f64();
            samples += out.inserted;
        }
        since += out.inserted;
        if since >= 800_000 {
            since = 0;
            let t = Instant::now();
            store.compact_device_index(800_000).await.expect("compaction");
            if warm {
                compact_s += t.elapsed().as_secs_f64();
            }
        }
    }
    let per = |s: f64| s * 1e6 / samples.max(1) as f64;
    println!(
        "{samples} samples: ingest {:.2} µs/sample, device-index moves {:.2} µs/sample, total {:.2} µs/sample",
        per(ingest_s),
        per(compact_s),
        per(ingest_s + compact_s)
    );
    store.close().await;
}
