//! Error types of the engine. Every variant carries what the user needs to fix the input.

use thiserror::Error;

/// Errors raised while validating input, fitting or scoring.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// A hyper-parameter is out of its domain.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParam {
        /// Parameter name as users spell it (`max_samples`, `contamination`, ...).
        name: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// Fitting needs at least one row and one feature.
    #[error("no data to fit: {0}")]
    EmptyData(String),
    /// A value is +inf or -inf. NaN is accepted (treated as missing), infinities are not.
    #[error("row {row}, column `{column}`: value {value} is not finite")]
    NonFinite {
        /// Zero-based row index in the matrix handed to the engine.
        row: usize,
        /// Feature name.
        column: String,
        /// The offending value.
        value: f32,
    },
    /// The data has another number of features than the model.
    #[error("wrong number of features: the model expects {expected}, the input has {got}")]
    FeatureCount {
        /// Number of features the model was trained with.
        expected: usize,
        /// Number of features handed in.
        got: usize,
    },
    /// Matrix buffer length does not match rows × columns.
    #[error("matrix shape mismatch: {len} values cannot form rows of {n_cols} columns")]
    Shape {
        /// Buffer length.
        len: usize,
        /// Declared column count.
        n_cols: usize,
    },
    /// A model file could not be read.
    #[error(transparent)]
    Model(#[from] ModelFormatError),
}

/// Why a model file was refused. Loading never panics; it returns one of these.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ModelFormatError {
    /// The file does not start with the anomalyd magic bytes.
    #[error("not an anomalyd model file (magic bytes missing)")]
    BadMagic,
    /// Written by a newer (or unknown) format version.
    #[error("model format version {found} is not supported (this build reads versions {min}..={max})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Oldest version readable.
        min: u16,
        /// Newest version readable.
        max: u16,
    },
    /// The file ends before the declared content.
    #[error("model file is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The payload checksum does not match: the file was altered or damaged.
    #[error("model file is corrupt: checksum {found:#010x} does not match the stored {stored:#010x}")]
    Checksum {
        /// CRC-32 stored in the file.
        stored: u32,
        /// CRC-32 computed over the payload.
        found: u32,
    },
    /// The content passed the checksum but violates an invariant (a damaged or hand-made file).
    #[error("model file is invalid: {0}")]
    Invalid(String),
}

/// Convenience alias.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
