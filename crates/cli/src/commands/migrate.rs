//! `anomalyd migrate`: create the database or bring its schema up to date.

use std::path::PathBuf;

use anomalyd_store::{Store, StoreOptions};

use crate::input::InputError;

/// Where the data lives; shared by the commands that open the database.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Directory for the default SQLite database (`anomalyd.db`).
    #[arg(long, env = "ANOMALYD_DATA_DIR", default_value = "./anomalyd-data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://path`); overrides --data-dir.
    #[arg(long, env = "ANOMALYD_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    /// The URL to open, creating the data directory for the default SQLite file.
    pub fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            if url.starts_with("postgres") {
                return Err(InputError(format!(
                    "{url}: PostgreSQL is not supported by this build yet; use sqlite://PATH"
                ))
                .into());
            }
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            InputError(format!("{}: cannot create data directory: {e}", self.data_dir.display()))
        })?;
        Ok(format!("sqlite://{}", self.data_dir.join("anomalyd.db").display()))
    }
}

/// Arguments of `anomalyd migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    db: DatabaseArgs,
}

/// Runs `anomalyd migrate`.
pub fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    let url = args.db.url()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store =
            Store::open(&url, &StoreOptions::default()).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        store.close().await;
        eprintln!("{url}: schema up to date");
        Ok(())
    })
}
