//! # anomalyd-store
//!
//! Persistence for anomalyd. SQLite in WAL mode is the default backend: one file, migrations
//! applied on open, a pool with timeouts. Queries are written against this module's types,
//! not the driver's, so a PostgreSQL backend can be added behind the same API.
//!
//! Lists use keyset pagination (an opaque cursor holding the last row's sort key), never
//! OFFSET and never a `COUNT(*)` per request.

mod anomalies;
mod cursor;
mod device_cache;
mod devices;
mod error;
mod incidents;
mod ingest;
mod insights;
mod keys;
mod models;
mod troubleshoot;
mod unmoved;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use device_cache::DeviceCache;
use unmoved::Unmoved;

pub use anomalies::{AnomalyFilter, AnomalyRecord, AnomalySort, AnomalyStatus, NewAnomaly, Page};
pub use cursor::Cursor;
pub use devices::{DeviceRecord, TelemetryRecord};
pub use error::StoreError;
pub use incidents::{DedupPolicy, IncidentFilter, IncidentRecord, incident_key};
pub use ingest::{IngestBatch, IngestOutcome, TelemetryRow};
pub use insights::{AttributeCorrelation, DashboardStats, TrendBucket};
pub use keys::{ApiKeyRecord, hash_key};
pub use models::{ModelRecord, NewModel, TrainingRow};
pub use troubleshoot::{CachedAnswer, troubleshoot_cache_key};
pub use webhooks::{
    ClaimedDelivery, DeliveryRecord, DeliveryStatus, EVENT_INCIDENT_OPENED, NewWebhook, WebhookRecord,
};

/// Store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most pooled connections.
    pub max_connections: u32,
    /// How long a request may wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a locked database before failing.
    pub busy_timeout: Duration,
    /// Copy the WAL back into the database file from a background task instead of inside
    /// the commit that crossed SQLite's threshold. With SQLite's default, every few
    /// transactions one commit also writes and syncs megabytes into the main file before it
    /// returns, and ingest answers only after its commit returns. For long-running servers;
    /// the pool's other users then never checkpoint themselves.
    pub background_checkpoint: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            background_checkpoint: false,
        }
    }
}

/// Guard of [`Store::hold_write_lock`].
#[doc(hidden)]
pub struct WriteLock {
    _tx: sqlx::Transaction<'static, sqlx::Sqlite>,
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Whether this handle checkpoints the WAL itself (see [`StoreOptions`]).
    background_checkpoint: bool,
    /// The device rows this handle's ingest has written (see `device_cache`).
    devices: Arc<DeviceCache>,
    /// Samples not yet moved into the per-device index (see `unmoved`).
    unmoved: Arc<Unmoved>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `url` (`sqlite://path` or a plain
    /// path) and applies pending migrations.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let url = if url.starts_with("sqlite:") { url.to_string() } else { format!("sqlite://{url}") };
        let connect = SqliteConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("bad database url `{url}`: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed (acknowledged) batch survives a crash of the machine, not only
            // of the process.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout);
        let connect =
            if options.background_checkpoint { connect.pragma("wal_autocheckpoint", "0") } else { connect };
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        let store = Store {
            pool,
            background_checkpoint: options.background_checkpoint,
            devices: Arc::default(),
            unmoved: Arc::default(),
        };
        store.migrate().await?;
        store.unmoved.load(&mut *store.pool.acquire().await?).await?;
        if options.background_checkpoint {
            tokio::spawn(checkpoint_loop(store.pool.clone()));
        }
        Ok(store)
    }

    /// Applies the migrations the database does not have yet.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations").run(&self.pool).await.map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// Connections in use and idle, for metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool (waits for connections in use).
    pub async fn close(&self) {
        // The handle that took checkpoints over leaves a short WAL behind, so the next start
        // does not replay a long one. Other handles (a CLI command beside a running server)
        // leave it alone: a TRUNCATE checkpoint would hold up the server's writer.
        if self.background_checkpoint
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await
        {
            tracing::warn!("final WAL checkpoint: {e}");
        }
        self.pool.close().await;
    }

    /// Takes the database's write lock and holds it until the guard is dropped (nothing is
    /// written). For tests of what happens while another writer blocks the database.
    #[doc(hidden)]
    pub async fn hold_write_lock(&self) -> Result<WriteLock> {
        let mut tx = self.pool.begin().await?;
        // A write, rolled back on drop, is what takes SQLite's RESERVED lock.
        sqlx::query("INSERT INTO counters (dim, value, n) VALUES ('write-lock', '', 0)")
            .execute(&mut *tx)
            .await?;
        Ok(WriteLock { _tx: tx })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// How often the background task checkpoints the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] until the pool closes. PASSIVE copies the
/// frames no reader still needs and waits for nobody; SQLite restarts the WAL from its start
/// once a checkpoint has copied all of it, so the file stays about one interval of writes long.
async fn checkpoint_loop(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if pool.is_closed() {
                break;
            }
            tracing::warn!("WAL checkpoint: {e}");
        }
    }
}
