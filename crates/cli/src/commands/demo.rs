//! `anomalyd demo`: the server on a fresh SQLite database, a model trained on a week of
//! simulated fleet history, and the same fleet streaming live (one simulated hour per
//! second) with injected faults, so anomalies appear within a minute.

use std::path::PathBuf;
use std::time::Duration;

use anomalyd_engine::fleet::{SimParams, Timestamp, simulate};
use anomalyd_service::error::ApiError;
use anomalyd_service::ingest::ingest_samples;
use anomalyd_service::models::{TrainRequest, start_training};
use anomalyd_service::{AppState, ServiceSettings, serve};
use anomalyd_store::{Store, StoreOptions};

use crate::input::InputError;

/// Arguments of `anomalyd demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = "ANOMALYD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Directory for the demo database (recreated on every start).
    #[arg(long, default_value = "./anomalyd-demo")]
    data_dir: PathBuf,
    /// Simulated devices.
    #[arg(long, default_value_t = 300)]
    devices: usize,
    /// Hours of history the model is trained on.
    #[arg(long, default_value_t = 168)]
    history: usize,
    /// Live hours streamed after the history (one per --tick-ms).
    #[arg(long, default_value_t = 240)]
    live: usize,
    /// Milliseconds between live hours.
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
}

/// Runs `anomalyd demo` until Ctrl-C (or until the live hours are streamed, then keeps serving).
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(args.data_dir.join("anomalyd.db"));
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| InputError(format!("{}: cannot create data directory: {e}", args.data_dir.display())))?;
    let url = format!("sqlite://{}", args.data_dir.join("anomalyd.db").display());
    let sim = SimParams {
        devices: args.devices,
        samples: args.history + args.live,
        seed: 42,
        ..Default::default()
    };
    eprintln!("demo: simulating {} devices × {} hours (with faults)", sim.devices, sim.samples);
    let (samples, episodes) = simulate(&sim);
    let split = Timestamp(sim.start_ms + args.history as i64 * sim.interval_secs * 1000);
    let (history, live): (Vec<_>, Vec<_>) = samples.into_iter().partition(|s| s.ts < split);
    eprintln!(
        "demo: {} faults will happen while streaming",
        episodes.iter().filter(|e| e.start >= split).count()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store =
            Store::open(&url, &StoreOptions { background_checkpoint: true, ..StoreOptions::default() })
                .await
                .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        // The demo serves without API keys, so it only ever listens on loopback.
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| InputError(format!("cannot listen on {}: {e}", args.listen)))?;
        super::serve::check_no_auth_is_local(listener.local_addr()?)?;
        let settings = ServiceSettings {
            auth: anomalyd_service::auth::AuthSettings::disabled(),
            ..ServiceSettings::default()
        };
        let state = AppState::with_settings(store.clone(), None, settings);
        let fail = |e: ApiError| anyhow::anyhow!("{}", e.detail);
        // History first, stored without a model; then a model trained from it through the
        // same path as POST /api/v1/models/train, activated; then the history again, which
        // stores nothing twice but warms every device's windows and scores the past.
        for chunk in history.chunks(5_000) {
            ingest_samples(&state, chunk.to_vec()).await.map_err(fail)?;
        }
        let job = start_training(
            &state,
            TrainRequest { from: i64::MIN, to: i64::MAX, activate: true, version: Some("demo-1".into()) },
        )
        .map_err(fail)?;
        let job = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match state.training.job(job.id) {
                Some(j) if j.phase == "failed" => anyhow::bail!("demo training failed: {:?}", j.error),
                Some(j) if j.phase == "done" => break j,
                _ => {}
            }
        };
        eprintln!("demo: trained model {} on {} rows in {:.1} s", job.version, job.rows, job.elapsed_secs);
        for chunk in history.chunks(5_000) {
            ingest_samples(&state, chunk.to_vec()).await.map_err(fail)?;
        }
        let addr = listener.local_addr()?;
        eprintln!("\nanomalyd demo is running: http://{addr} (loopback, no API keys needed)");
        eprintln!("  dashboard:  http://{addr}/");
        eprintln!("  anomalies:  curl -s 'http://{addr}/api/v1/anomalies?limit=5'");
        eprintln!("  incidents:  curl -s 'http://{addr}/api/v1/incidents?limit=5'");
        eprintln!("  stats:      curl -s 'http://{addr}/api/v1/dashboard/stats'");
        eprintln!("  API docs:   http://{addr}/docs");
        eprintln!("  streaming one simulated hour per {} ms; Ctrl-C stops\n", args.tick_ms);
        let feeder_state = state.clone();
        let tick = Duration::from_millis(args.tick_ms);
        let feeder = tokio::spawn(async move {
            let mut live = live;
            live.sort_by_key(|s| s.ts);
            for hour in live.chunk_by(|a, b| a.ts == b.ts) {
                tokio::time::sleep(tick).await;
                match ingest_samples(&feeder_state, hour.to_vec()).await {
                    Ok(r) if r["anomalies"].as_u64().unwrap_or(0) > 0 => {
                        eprintln!(
                            "demo: {} at {}: {} new anomalies",
                            r["accepted"], hour[0].ts, r["anomalies"]
                        )
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("demo: ingest failed: {}", e.detail),
                }
            }
            eprintln!("demo: the simulated fleet has finished streaming; the API keeps serving");
        });
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(listener, state, shutdown).await?;
        feeder.abort();
        store.close().await;
        Ok(())
    })
}
