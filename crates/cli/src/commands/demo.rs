//! `anomalyd demo`: the server on a fresh SQLite database, a model trained on a week of
//! simulated fleet history, and the same fleet streaming live (one simulated hour per
//! second) with injected faults, so anomalies appear within a minute.

use std::path::PathBuf;
use std::time::Duration;

use anomalyd_engine::fleet::{FleetBundle, FleetConfig, SimParams, Timestamp, extract_all, simulate};
use anomalyd_service::ingest::ingest_samples;
use anomalyd_service::{AppState, serve};
use anomalyd_store::{Store, StoreOptions};

use crate::input::InputError;

/// The demo's feature configuration (the one documented in `config/fleet.toml`).
const DEMO_CONFIG: &str = include_str!("../../../../config/fleet.toml");

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
    let config = FleetConfig::from_toml(DEMO_CONFIG).expect("the shipped configuration is valid");
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
    let (table, _) = extract_all(&config, history.clone());
    let bundle = FleetBundle::train(config, &table)?;
    eprintln!(
        "demo: trained global + {} cohort models on {} rows; {} faults will happen",
        bundle.cohorts.len(),
        table.len(),
        episodes.iter().filter(|e| e.start >= split).count()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store =
            Store::open(&url, &StoreOptions::default()).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let state = AppState::new(store.clone(), Some(bundle));
        // The history goes in first (its anomalies too), so the API is populated at once.
        for chunk in history.chunks(5_000) {
            ingest_samples(&state, chunk.to_vec()).await.map_err(|e| anyhow::anyhow!("{}", e.detail))?;
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| InputError(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr()?;
        eprintln!("\nanomalyd demo is running: http://{addr}");
        eprintln!("  anomalies:  curl -s 'http://{addr}/api/v1/anomalies?limit=5'");
        eprintln!("  devices:    curl -s 'http://{addr}/api/v1/devices?limit=5'");
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
