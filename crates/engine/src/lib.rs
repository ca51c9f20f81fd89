//! # anomalyd-engine
//!
//! Pure algorithms of anomalyd: an Isolation Forest (Liu, Ting & Zhou, ICDM 2008) with
//! scikit-learn's semantics, per-row explanations, score calibration, evaluation metrics and
//! a versioned binary model format. No IO, no async: callers hand in validated matrices and
//! bytes.
//!
//! ```
//! use anomalyd_engine::{ForestParams, IsolationForest, Matrix};
//! let rows: Vec<f32> = (0..200).flat_map(|i| [i as f32 % 10.0, 1.0]).chain([500.0, 1.0]).collect();
//! let data = Matrix::new(rows, 2, &[]).unwrap();
//! let names = vec!["load".to_string(), "const".to_string()];
//! let model = IsolationForest::fit(&data, names, &ForestParams { seed: 7, ..Default::default() }).unwrap();
//! let scores = model.score_samples(&data).unwrap();
//! assert!(scores[200] > scores[0]); // the 500.0 row is the most anomalous
//! ```
//!
//! ## Semantics
//! * Each tree draws `max_samples` rows without replacement (default `min(256, n)`) and,
//!   when `max_features < 1`, a subset of `max(1, ⌊max_features·d⌋)` features.
//! * A node splits on a feature drawn uniformly among those not constant on its rows, at a
//!   threshold uniform in [min, max); rows `≤ threshold` go left. Growth stops at one row or
//!   at depth `ceil(log2(max_samples))`.
//! * A row's path length in a tree is the leaf depth plus `c(n_leaf)`; its anomaly score is
//!   `2^(−mean path / c(max_samples))`, scikit-learn's `-score_samples`.
//! * Missing values (NaN) are ignored when choosing a split; rows missing the split feature
//!   follow the child that received more training rows, at training and at scoring.
//! * Labels: `contamination = auto` flags scores above 0.5; a fraction `c` flags scores above
//!   the `1 − c` quantile of the training scores (of a uniform 100 000-row sample when the
//!   training set is larger).
//! * Explanations and calibration: see [`explain`] and [`calibrate`].
//! * Random draws: by default anomalyd's own ([`RandomStream::Anomalyd`]: per-tree
//!   Xoshiro256++ streams, evenly spread row samples, stratified root splits). With
//!   [`RandomStream::ScikitLearn`] a seed grows exactly the trees scikit-learn's
//!   `IsolationForest(random_state=seed)` grows on the same data ([`sklearn_stream`]).

pub mod calibrate;
pub mod enrichment;
pub mod error;
pub mod explain;
pub mod fleet;
mod forest;
pub mod format;
mod matrix;
pub mod metrics;
mod packed;
mod params;
mod score;
pub mod sklearn_stream;
mod tree;

pub use calibrate::{Calibration, Severity};
pub use error::{EngineError, ModelFormatError, Result};
pub use explain::{Attribution, Direction, FeatureStats};
pub use forest::{Assessment, IsolationForest};
pub use matrix::Matrix;
pub use params::{
    Contamination, DEFAULT_CALIBRATION_ROWS, ForestParams, MAX_FEATURES_LIMIT, MAX_SAMPLES_LIMIT,
    RandomStream, ValidParams,
};
pub use tree::average_path_length;
