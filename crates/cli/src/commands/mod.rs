//! One module per subcommand.

pub mod bench;
pub mod bench_api;
pub mod bench_fleet;
pub mod config_show;
pub mod demo;
pub mod evaluate;
pub mod evaluate_stream;
pub mod inspect;
pub mod keys;
pub mod migrate;
pub mod score;
pub mod serve;
pub mod simulate;
pub mod train;

use std::path::Path;

use anomalyd_engine::{Contamination, ForestParams, IsolationForest, RandomStream};

use crate::input::{InputError, InputFormat, Selection};

/// Forest hyper-parameters shared by `train` and `evaluate` (scikit-learn's names).
#[derive(Debug, Clone, clap::Args)]
pub struct ForestArgs {
    /// Number of trees.
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
    /// Rows drawn per tree [default: min(256, rows)].
    #[arg(long)]
    pub max_samples: Option<usize>,
    /// Fraction of features each tree may split on, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub max_features: f64,
    /// `auto` (score > 0.5 is anomalous) or the expected anomaly fraction in (0, 0.5].
    #[arg(long, default_value = "auto")]
    pub contamination: Contamination,
    /// Training rows scored to calibrate grades and feature ranges.
    #[arg(long, default_value_t = anomalyd_engine::DEFAULT_CALIBRATION_ROWS)]
    pub calibration_rows: usize,
    /// How random choices follow from the seed: `anomalyd`, or `scikit-learn` to grow the
    /// same trees as scikit-learn's IsolationForest(random_state=SEED) (seeds below 2^32,
    /// no missing values).
    #[arg(long, default_value = "anomalyd")]
    pub random_stream: RandomStream,
}

impl ForestArgs {
    /// Engine parameters for `seed`.
    pub fn params(&self, seed: u64) -> ForestParams {
        ForestParams {
            n_trees: self.trees,
            max_samples: self.max_samples,
            max_features: self.max_features,
            contamination: self.contamination,
            seed,
            calibration_rows: self.calibration_rows,
            random_stream: self.random_stream,
        }
    }
}

/// Input file and column selection shared by the commands that read tables.
#[derive(Debug, Clone, clap::Args)]
pub struct InputArgs {
    /// Input file (.csv, .csv.gz, .ndjson, .jsonl, .parquet) or `-` for CSV on stdin.
    #[arg(long, short)]
    pub input: Option<String>,
    /// Override the format guessed from the file extension.
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// Feature columns, comma-separated [default: every column except the label column].
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
}

impl InputArgs {
    /// The input path; a usage error when it is missing.
    pub fn path(&self) -> anyhow::Result<&str> {
        self.input.as_deref().ok_or_else(|| InputError("--input FILE is required".into()).into())
    }

    /// Column selection with an optional label column.
    pub fn selection(&self, label: Option<&str>) -> Selection {
        Selection { features: self.features.clone(), label: label.map(str::to_string) }
    }
}

/// Loads a model file; every failure names the file.
pub fn load_model(path: &Path) -> anyhow::Result<IsolationForest> {
    let bytes =
        std::fs::read(path).map_err(|e| InputError(format!("{}: cannot read model: {e}", path.display())))?;
    IsolationForest::from_bytes(&bytes).map_err(|e| InputError(format!("{}: {e}", path.display())).into())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash never leaves
/// a half-written model behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|s| s.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move model into place at {}", path.display()))?;
    Ok(())
}
