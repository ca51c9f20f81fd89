//! `anomalyd serve`: the HTTP API on the configured database.

use anomalyd_service::{AppState, serve};
use anomalyd_store::{Store, StoreOptions};

use super::migrate::DatabaseArgs;
use crate::input::InputError;

/// Arguments of `anomalyd serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ANOMALYD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    db: DatabaseArgs,
    /// Fleet bundle (from `anomalyd train --telemetry`) that scores ingested telemetry;
    /// without one, telemetry is stored but not scored.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
}

/// Runs `anomalyd serve` until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let url = args.db.url()?;
    let bundle = match &args.model {
        None => None,
        Some(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| InputError(format!("{}: cannot read bundle: {e}", p.display())))?;
            Some(
                anomalyd_engine::fleet::FleetBundle::from_bytes(&bytes)
                    .map_err(|e| InputError(format!("{}: {e}", p.display())))?,
            )
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store =
            Store::open(&url, &StoreOptions::default()).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| InputError(format!("cannot listen on {}: {e}", args.listen)))?;
        eprintln!("anomalyd listening on http://{} (database {url})", listener.local_addr()?);
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
        };
        serve(listener, AppState::new(store.clone(), bundle), shutdown).await?;
        store.close().await;
        eprintln!("anomalyd stopped");
        Ok(())
    })
}
