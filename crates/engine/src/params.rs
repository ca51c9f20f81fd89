//! Hyper-parameters: an unchecked builder, validated once against the data into [`ValidParams`].

use crate::error::{EngineError, Result};

/// How the anomaly threshold (the label cut) is chosen, as in scikit-learn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contamination {
    /// The original paper's rule: a row is anomalous when its anomaly score exceeds 0.5
    /// (scikit-learn's `offset_ = -0.5`).
    Auto,
    /// Expected fraction of anomalies in (0, 0.5]: the threshold is the training-score
    /// quantile that flags this fraction of the training rows.
    Fraction(f64),
}

impl std::fmt::Display for Contamination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Contamination::Auto => f.write_str("auto"),
            Contamination::Fraction(x) => write!(f, "{x}"),
        }
    }
}

impl std::str::FromStr for Contamination {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Contamination::Auto);
        }
        match s.parse::<f64>() {
            Ok(x) if x > 0.0 && x <= 0.5 => Ok(Contamination::Fraction(x)),
            _ => Err(format!("expected `auto` or a fraction in (0, 0.5], got `{s}`")),
        }
    }
}

/// How the forest's random choices are drawn from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RandomStream {
    /// anomalyd's own draws: independent Xoshiro256++ streams per tree, row samples spread
    /// evenly over the rows and root splits stratified across the forest (see `tree.rs`).
    /// Each tree is still an ordinary isolation tree; the forest varies less from seed to seed.
    #[default]
    Anomalyd,
    /// scikit-learn's draws: the seed grows the same trees as
    /// `sklearn.ensemble.IsolationForest(random_state=seed)` on the same `float32` data
    /// (see [`crate::sklearn_stream`]). Needs a seed below 2^32 and data without missing
    /// values; training is slower on mid-sized data (it shuffles all rows per tree, as numpy does).
    ScikitLearn,
}

impl std::fmt::Display for RandomStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RandomStream::Anomalyd => "anomalyd",
            RandomStream::ScikitLearn => "scikit-learn",
        })
    }
}

impl std::str::FromStr for RandomStream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "anomalyd" => Ok(RandomStream::Anomalyd),
            "scikit-learn" | "sklearn" => Ok(RandomStream::ScikitLearn),
            _ => Err(format!("expected `anomalyd` or `scikit-learn`, got `{s}`")),
        }
    }
}

/// Largest `max_samples` supported: node indices within a tree are 16-bit.
pub const MAX_SAMPLES_LIMIT: usize = 32_768;
/// Largest number of features supported: the batch kernel keeps `feature × 16` in 16 bits.
pub const MAX_FEATURES_LIMIT: usize = 4_095;
/// Default number of training rows scored to calibrate grades.
pub const DEFAULT_CALIBRATION_ROWS: usize = 1_024;

/// Isolation Forest parameters as the user gives them (scikit-learn names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ForestParams {
    /// Number of trees (`n_estimators`). Default 100.
    pub n_trees: usize,
    /// Rows drawn (without replacement) per tree; `None` means `min(256, n)`.
    pub max_samples: Option<usize>,
    /// Fraction of features each tree may split on, in (0, 1]. Default 1.0.
    pub max_features: f64,
    /// Threshold rule for the boolean label.
    pub contamination: Contamination,
    /// Seed of every random choice; the same seed gives the same model on any thread count.
    pub seed: u64,
    /// Training rows scored to build the grade calibration and feature quantiles.
    pub calibration_rows: usize,
    /// How random choices follow from `seed`.
    pub random_stream: RandomStream,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self {
            n_trees: 100,
            max_samples: None,
            max_features: 1.0,
            contamination: Contamination::Auto,
            seed: 0,
            calibration_rows: DEFAULT_CALIBRATION_ROWS,
            random_stream: RandomStream::Anomalyd,
        }
    }
}

/// Parameters checked against the data shape; the fitting code takes only this type.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidParams {
    pub(crate) n_trees: usize,
    pub(crate) max_samples: usize,
    pub(crate) features_per_tree: usize,
    pub(crate) max_features: f64,
    pub(crate) contamination: Contamination,
    pub(crate) seed: u64,
    pub(crate) calibration_rows: usize,
    pub(crate) max_depth: usize,
    pub(crate) random_stream: RandomStream,
}

impl ForestParams {
    /// Validates the parameters for a training matrix of `n_rows` × `n_cols`.
    pub fn check(&self, n_rows: usize, n_cols: usize) -> Result<ValidParams> {
        if n_rows == 0 {
            return Err(EngineError::EmptyData("the training data has no rows".into()));
        }
        if n_cols == 0 {
            return Err(EngineError::EmptyData("the training data has no feature columns".into()));
        }
        if n_cols > MAX_FEATURES_LIMIT {
            return Err(EngineError::InvalidParam {
                name: "features",
                reason: format!("at most {MAX_FEATURES_LIMIT} features are supported, got {n_cols}"),
            });
        }
        if self.n_trees == 0 || self.n_trees > 100_000 {
            return Err(EngineError::InvalidParam {
                name: "n_trees",
                reason: format!("must be in 1..=100000, got {}", self.n_trees),
            });
        }
        let max_samples = match self.max_samples {
            None => n_rows.min(256),
            Some(0) => {
                return Err(EngineError::InvalidParam {
                    name: "max_samples",
                    reason: "must be at least 1".into(),
                });
            }
            // scikit-learn clips max_samples to n with a warning; we do the same, silently.
            Some(m) => m.min(n_rows),
        };
        if max_samples < 2 {
            // c(1) = 0: a one-row sample cannot isolate anything and scores would be 0/0.
            return Err(if n_rows < 2 {
                EngineError::EmptyData(format!("need at least 2 training rows, got {n_rows}"))
            } else {
                EngineError::InvalidParam { name: "max_samples", reason: "must be at least 2".into() }
            });
        }
        if max_samples > MAX_SAMPLES_LIMIT {
            return Err(EngineError::InvalidParam {
                name: "max_samples",
                reason: format!(
                    "at most {MAX_SAMPLES_LIMIT} is supported (Isolation Forest works best with small samples; 256 is the usual choice), got {max_samples}"
                ),
            });
        }
        if !(self.max_features > 0.0 && self.max_features <= 1.0) {
            return Err(EngineError::InvalidParam {
                name: "max_features",
                reason: format!("must be a fraction in (0, 1], got {}", self.max_features),
            });
        }
        if let Contamination::Fraction(c) = self.contamination
            && !(c > 0.0 && c <= 0.5)
        {
            return Err(EngineError::InvalidParam {
                name: "contamination",
                reason: format!("must be `auto` or a fraction in (0, 0.5], got {c}"),
            });
        }
        if self.random_stream == RandomStream::ScikitLearn && self.seed > u32::MAX as u64 {
            return Err(EngineError::InvalidParam {
                name: "seed",
                reason: format!(
                    "scikit-learn's random stream takes seeds below 2^32 (numpy's limit), got {}",
                    self.seed
                ),
            });
        }
        // scikit-learn: max(1, int(max_features * n_features)).
        let features_per_tree = ((self.max_features * n_cols as f64) as usize).clamp(1, n_cols);
        let max_depth = (max_samples.max(2) as f64).log2().ceil() as usize;
        Ok(ValidParams {
            n_trees: self.n_trees,
            max_samples,
            features_per_tree,
            max_features: self.max_features,
            contamination: self.contamination,
            seed: self.seed,
            calibration_rows: self.calibration_rows.clamp(1, n_rows),
            max_depth,
            random_stream: self.random_stream,
        })
    }
}

impl ValidParams {
    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.n_trees
    }
    /// Rows per tree actually used (ψ).
    pub fn max_samples(&self) -> usize {
        self.max_samples
    }
    /// Requested feature fraction.
    pub fn max_features(&self) -> f64 {
        self.max_features
    }
    /// Number of features each tree may split on.
    pub fn features_per_tree(&self) -> usize {
        self.features_per_tree
    }
    /// Threshold rule.
    pub fn contamination(&self) -> Contamination {
        self.contamination
    }
    /// Seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Tree height limit, `ceil(log2(max_samples))`.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }
    /// Rows scored for calibration.
    pub fn calibration_rows(&self) -> usize {
        self.calibration_rows
    }
    /// How random choices followed from the seed.
    pub fn random_stream(&self) -> RandomStream {
        self.random_stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_scikit_learn() {
        let p = ForestParams::default().check(1000, 10).unwrap();
        assert_eq!(p.max_samples(), 256);
        assert_eq!(p.max_depth(), 8);
        assert_eq!(p.features_per_tree(), 10);
        let small = ForestParams::default().check(100, 3).unwrap();
        assert_eq!(small.max_samples(), 100);
        assert_eq!(small.max_depth(), 7);
    }

    #[test]
    fn rejects_bad_values_by_name() {
        let bad = ForestParams { max_features: 0.0, ..Default::default() };
        assert!(matches!(bad.check(10, 2), Err(EngineError::InvalidParam { name: "max_features", .. })));
        let bad = ForestParams { n_trees: 0, ..Default::default() };
        assert!(matches!(bad.check(10, 2), Err(EngineError::InvalidParam { name: "n_trees", .. })));
        assert!("0.7".parse::<Contamination>().is_err());
        assert_eq!("auto".parse::<Contamination>().unwrap(), Contamination::Auto);
        assert!(matches!(ForestParams::default().check(0, 2), Err(EngineError::EmptyData(_))));
        assert!(matches!(ForestParams::default().check(1, 2), Err(EngineError::EmptyData(_))));
        let big =
            ForestParams { seed: 1 << 32, random_stream: RandomStream::ScikitLearn, ..Default::default() };
        assert!(matches!(big.check(10, 2), Err(EngineError::InvalidParam { name: "seed", .. })));
        let top = ForestParams { seed: u32::MAX as u64, ..big };
        assert!(top.check(10, 2).is_ok());
        assert_eq!("sklearn".parse::<RandomStream>().unwrap(), RandomStream::ScikitLearn);
        assert_eq!(
            RandomStream::ScikitLearn.to_string().parse::<RandomStream>().unwrap(),
            RandomStream::ScikitLearn
        );
        assert!("numpy".parse::<RandomStream>().is_err());
        let one = ForestParams { max_samples: Some(1), ..Default::default() };
        assert!(matches!(one.check(10, 2), Err(EngineError::InvalidParam { name: "max_samples", .. })));
    }
}
