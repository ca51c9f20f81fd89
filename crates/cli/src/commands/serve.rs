//! `anomalyd serve`: the HTTP API on the configured database.

use anomalyd_service::pipeline::ActiveBundle;
use anomalyd_service::{AppState, Shutdown, serve_until};
use anomalyd_store::{Store, StoreOptions};

use crate::config::{ServerFlags, load, process_env};
use crate::input::InputError;

/// Most samples one ingest request may carry (the queue must hold at least one).
pub const MAX_REQUEST_SAMPLES: usize = anomalyd_service::ingest::MAX_BATCH;

/// Arguments of `anomalyd serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    flags: ServerFlags,
    /// Fleet bundle (from `anomalyd train --telemetry`) that scores ingested telemetry;
    /// without one, the model the registry marks active scores it (if there is one).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Serve without API keys (development only): refused unless the listen address is
    /// loopback.
    #[arg(long)]
    insecure_no_auth: bool,
}

/// Refuses to serve without keys on anything but loopback.
pub fn check_no_auth_is_local(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(InputError(format!(
            "--insecure-no-auth serves without API keys and is only allowed on loopback, not {addr}; \
             create a key with `anomalyd keys create` instead"
        ))
        .into())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
}

/// Runs `anomalyd serve` until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let (settings, _) = load(&args.flags, &process_env())?;
    let url = settings.database_url()?;
    let mut service = settings.service()?;
    if args.insecure_no_auth {
        service.auth = anomalyd_service::auth::AuthSettings::disabled();
    }
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
        // A long-running server checkpoints the WAL off the ingest path.
        let options = StoreOptions { background_checkpoint: true, ..settings.store_options() };
        let store = Store::open(&url, &options).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| InputError(format!("cannot listen on {}: {e}", settings.listen)))?;
        if args.insecure_no_auth {
            check_no_auth_is_local(listener.local_addr()?)?;
            eprintln!("warning: serving WITHOUT API keys (--insecure-no-auth, loopback only)");
        }
        eprintln!("anomalyd listening on http://{} (database {url})", listener.local_addr()?);
        let state = match bundle {
            Some(bundle) => AppState::with_settings(
                store.clone(),
                Some(ActiveBundle { bundle, version: "file".into(), model_id: None }),
                service,
            ),
            None => AppState::from_registry(store.clone(), service).await?,
        };
        match state.pipeline.bundle() {
            Some(b) => eprintln!("scoring with model {}", b.version),
            None => eprintln!("no active model: telemetry is stored, not scored (POST /api/v1/models/train)"),
        }
        let outcome = serve_until(listener, state, shutdown_signal()).await?;
        // Closing the pool checkpoints SQLite's write-ahead log into the database file.
        store.close().await;
        match outcome {
            Shutdown::Clean => {
                eprintln!("anomalyd stopped: every accepted request answered, the ingest queue drained");
                Ok(())
            }
            Shutdown::GraceExpired => Err(anyhow::anyhow!(
                "stopped after the shutdown grace period ({} ms) with work unfinished; unanswered requests were not acknowledged",
                settings.http.shutdown_grace_ms
            )),
        }
    })
}
