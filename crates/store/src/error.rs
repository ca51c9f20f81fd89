//! Store errors, split by who is at fault.

use thiserror::Error;

/// Errors from the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// No connection could be had in time (the pool is exhausted or the database locked):
    /// worth retrying.
    #[error("database busy: {0}")]
    Busy(String),
    /// A migration could not be applied.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The configuration (URL, options) is invalid.
    #[error("{0}")]
    Config(String),
    /// No row with that id.
    #[error("{what} {id} not found")]
    NotFound {
        /// Entity name.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A pagination cursor that this server did not issue (or that was altered).
    #[error("invalid cursor `{0}`")]
    BadCursor(String),
    /// A request that the data does not allow (e.g. an impossible status change).
    #[error("{0}")]
    Invalid(String),
    /// Stored data that cannot be read as written (a damaged or hand-edited database).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A request that conflicts with the row's current state (e.g. retrying a delivery that
    /// is not dead).
    #[error("{0}")]
    Conflict(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => {
                StoreError::Busy("no database connection within the acquire timeout".into())
            }
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6): another writer held the lock past the
            // busy timeout.
            sqlx::Error::Database(ref d) if matches!(d.code().as_deref(), Some("5" | "6" | "517")) => {
                StoreError::Busy(d.message().to_string())
            }
            other => StoreError::Database(other),
        }
    }
}
