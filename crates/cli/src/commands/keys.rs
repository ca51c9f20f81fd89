//! `anomalyd keys create|list|revoke`: API keys, stored as hashes in the server's database.

use anomalyd_service::auth::{Scope, generate_key};
use anomalyd_store::{Store, hash_key};

use crate::config::{ServerFlags, load, process_env};
use crate::input::InputError;

/// Arguments of `anomalyd keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Debug, clap::Subcommand)]
enum KeysAction {
    /// Create a key and print it (it is shown this once; only its hash is stored).
    Create {
        /// Who or what uses the key.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: read, write (includes read), admin (includes all).
        #[arg(long, default_value = "read")]
        scopes: String,
        #[command(flatten)]
        flags: ServerFlags,
    },
    /// List keys (names, scopes, dates; never the keys).
    List {
        #[command(flatten)]
        flags: ServerFlags,
    },
    /// Revoke a key by id.
    Revoke {
        /// Key id (from `keys list`).
        id: i64,
        #[command(flatten)]
        flags: ServerFlags,
    },
}

/// Runs `anomalyd keys …`.
pub fn run(args: &KeysArgs) -> anyhow::Result<()> {
    let flags = match &args.action {
        KeysAction::Create { flags, .. } | KeysAction::List { flags } | KeysAction::Revoke { flags, .. } => {
            flags
        }
    };
    let (settings, _) = load(flags, &process_env())?;
    let url = settings.database_url()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store =
            Store::open(&url, &settings.store_options()).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        match &args.action {
            KeysAction::Create { name, scopes, .. } => {
                let list: Vec<&str> = scopes.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
                if list.is_empty() {
                    return Err(InputError("--scopes: give at least one of read, write, admin".into()).into());
                }
                if let Some(bad) = list.iter().find(|s| Scope::parse(s).is_none()) {
                    return Err(
                        InputError(format!("--scopes: unknown scope `{bad}` (read, write, admin)")).into()
                    );
                }
                let key = generate_key();
                let id = store
                    .create_api_key(name, &list.join(","), &hash_key(&key), anomalyd_service::now_ms())
                    .await?;
                eprintln!("created key {id} ({name}, scopes {}); it is shown only now:", list.join(","));
                println!("{key}");
            }
            KeysAction::List { .. } => {
                println!("{:>4}  {:<24} {:<18} {:<26} revoked", "id", "name", "scopes", "created");
                for k in store.list_api_keys().await? {
                    let time = |ms: i64| anomalyd_engine::fleet::Timestamp(ms).to_rfc3339();
                    println!(
                        "{:>4}  {:<24} {:<18} {:<26} {}",
                        k.id,
                        k.name,
                        k.scopes,
                        time(k.created_at),
                        k.revoked_at.map_or_else(|| "-".to_string(), time)
                    );
                }
            }
            KeysAction::Revoke { id, .. } => {
                let k = store.revoke_api_key(*id, anomalyd_service::now_ms()).await.map_err(|e| match e {
                    anomalyd_store::StoreError::NotFound { .. } => {
                        InputError(format!("no API key with id {id}")).into()
                    }
                    other => anyhow::Error::from(other),
                })?;
                eprintln!(
                    "revoked key {} ({}); servers stop accepting it within their key cache time",
                    k.id, k.name
                );
            }
        }
        store.close().await;
        Ok(())
    })
}
