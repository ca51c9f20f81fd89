//! `anomalyd migrate`: create the database or bring its schema up to date.

use anomalyd_store::Store;

use crate::config::{ServerFlags, load, process_env};

/// Arguments of `anomalyd migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    flags: ServerFlags,
}

/// Runs `anomalyd migrate`.
pub fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    let (settings, _) = load(&args.flags, &process_env())?;
    let url = settings.database_url()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store =
            Store::open(&url, &settings.store_options()).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        store.close().await;
        eprintln!("{url}: schema up to date");
        Ok(())
    })
}
