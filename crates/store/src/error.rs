//! Store errors, split by who is at fault.

use thiserror::Error;

/// Errors from the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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
}
