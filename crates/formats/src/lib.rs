//! # anomalyd-formats
//!
//! Parsers for the files anomalyd reads: feature tables ([`table`]) and raw telemetry
//! ([`telemetry`]) from CSV and NDJSON. They take bytes or a reader and return validated
//! values, so the same code runs in the CLI and under the fuzzer; opening files, gzip,
//! stdin and progress bars stay in the binary. Every error names the file, the row
//! (1-based, counting data rows) and the column or field at fault.

pub mod table;
pub mod telemetry;

/// Input that cannot be read as asked: the message names file, row and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// Result of the parsers.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

pub(crate) fn fail<T>(msg: String) -> Result<T> {
    Err(FormatError(msg))
}

/// True for a cell that means "no value": empty, `NA`, `nan` (any case) or `null`.
pub fn is_missing(trimmed: &str) -> bool {
    trimmed.is_empty()
        || trimmed.eq_ignore_ascii_case("nan")
        || trimmed.eq_ignore_ascii_case("na")
        || trimmed == "null"
}
