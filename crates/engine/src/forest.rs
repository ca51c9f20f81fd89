//! The Isolation Forest model: fitting, scoring, labelling and explaining.

use rand::SeedableRng;
use rand::seq::index;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::calibrate::{Calibration, Severity, quantile, quantile_unsorted};
use crate::error::{EngineError, Result};
use crate::explain::{Attribution, FeatureStats};
use crate::matrix::{Matrix, check_row};
use crate::params::{Contamination, ForestParams, RandomStream, ValidParams};
use crate::score::{self, BLOCK};
use crate::sklearn_stream;
use crate::tree::{
    TreeBuf, Trees, average_path_length, balanced_samples, build_tree, root_plans, sparse_sample,
};

/// Largest training set whose every row is scored to set a contamination threshold.
const THRESHOLD_ROWS: usize = 100_000;

/// Most rows per parallel task when scoring a batch.
const CHUNK_ROWS: usize = 512;
/// Batches up to this size are scored on the calling thread: splitting them costs more
/// than it saves.
const SEQUENTIAL_ROWS: usize = 32;

/// A fitted Isolation Forest with its calibration and training statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForest {
    pub(crate) params: ValidParams,
    pub(crate) feature_names: Vec<String>,
    pub(crate) trees: Trees,
    pub(crate) feature_stats: Vec<FeatureStats>,
    pub(crate) calibration: Calibration,
    /// Anomaly-score threshold: rows scoring above it are labelled anomalous.
    pub(crate) threshold: f32,
}

/// Score, label and calibration of one row, optionally with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Anomaly score in (0, 1]; higher is more anomalous (scikit-learn's `-score_samples`).
    pub anomaly_score: f32,
    /// True when the score exceeds the model's threshold.
    pub is_anomaly: bool,
    /// Empirical CDF of training scores at this score, in [0, 1].
    pub grade: f32,
    /// Severity derived from the grade.
    pub severity: Severity,
    /// Top features by attribution weight (empty unless requested).
    pub explanation: Vec<Attribution>,
}

/// Per-tree random streams: one Xoshiro256++ seeded from `seed`, advanced by `jump()`
/// (2^128 steps) between trees, so tree `t`'s stream depends only on `(seed, t)` and the
/// streams never overlap. The stream after the last tree draws the row samples and root
/// plans of all trees; one jump further, the calibration sample.
fn tree_streams(seed: u64, n_trees: usize) -> (Vec<Xoshiro256PlusPlus>, Xoshiro256PlusPlus) {
    let mut base = Xoshiro256PlusPlus::seed_from_u64(seed);
    let streams = (0..n_trees)
        .map(|_| {
            let s = base.clone();
            base.jump();
            s
        })
        .collect();
    (streams, base)
}

impl IsolationForest {
    /// Fits a forest on `data` whose columns are named `feature_names`.
    pub fn fit(data: &Matrix, feature_names: Vec<String>, params: &ForestParams) -> Result<Self> {
        if feature_names.len() != data.n_cols() {
            return Err(EngineError::FeatureCount { expected: feature_names.len(), got: data.n_cols() });
        }
        let p = params.check(data.n_rows(), data.n_cols())?;
        if p.random_stream == RandomStream::ScikitLearn {
            return Self::fit_like_scikit_learn(data, feature_names, p);
        }
        let (streams, mut rest) = tree_streams(p.seed, p.n_trees);
        // Small data: balanced samples drawn up front. Large data: each tree draws its own
        // rows in parallel (a row then lands in at most one or two trees anyway).
        let balanced = (p.max_samples * p.n_trees > data.n_rows())
            .then(|| balanced_samples(&mut rest, data.n_rows(), p.max_samples, p.n_trees));
        let roots = root_plans(&mut rest, p.n_trees, p.features_per_tree);
        let c_table: Vec<f64> = (0..=p.max_samples).map(average_path_length).collect();
        let built: Vec<_> = streams
            .into_par_iter()
            .zip(roots)
            .enumerate()
            .with_min_len(4)
            .map(|(t, (mut rng, root))| {
                let own;
                let rows = match &balanced {
                    Some(all) => &all[t * p.max_samples..(t + 1) * p.max_samples],
                    None => {
                        own = sparse_sample(&mut rng, data.n_rows(), p.max_samples);
                        &own[..]
                    }
                };
                build_tree(data, rows, root, &p, &c_table, &mut rng)
            })
            .collect();
        rest.jump();
        Ok(Self::assemble(data, feature_names, p, &built, &mut rest))
    }

    /// [`IsolationForest::fit`] with [`RandomStream::ScikitLearn`]: scikit-learn's trees.
    fn fit_like_scikit_learn(data: &Matrix, feature_names: Vec<String>, p: ValidParams) -> Result<Self> {
        if data.has_nan() {
            // scikit-learn's splitter also draws for missing values and weighs two candidate
            // splits by its regression criterion; that part is not reproduced.
            return Err(EngineError::InvalidParam {
                name: "random_stream",
                reason: "scikit-learn's random stream needs data without missing values".into(),
            });
        }
        let (n, d) = (data.n_rows(), data.n_cols());
        let c_table: Vec<f64> = (0..=p.max_samples).map(average_path_length).collect();
        let built: Vec<_> = sklearn_stream::tree_seeds(p.seed as u32, p.n_trees)
            .into_par_iter()
            .map(|seed| {
                let draws = sklearn_stream::tree_draws(seed, n, d, p.max_samples, p.features_per_tree);
                sklearn_stream::build_tree(data, &draws, p.max_depth, &c_table)
            })
            .collect();
        // Calibration is anomalyd's own: its sample comes from a stream of the seed.
        let (_, mut rest) = tree_streams(p.seed, 0);
        Ok(Self::assemble(data, feature_names, p, &built, &mut rest))
    }

    /// The forest of `built` trees, calibrated on `data` with draws from `rng`.
    fn assemble(
        data: &Matrix,
        feature_names: Vec<String>,
        p: ValidParams,
        built: &[TreeBuf],
        rng: &mut Xoshiro256PlusPlus,
    ) -> Self {
        let mut trees = Trees::with_capacity(built.len(), built.iter().map(|t| t.nodes.len()).sum());
        for t in built {
            trees.push(t);
        }
        let mut forest = IsolationForest {
            params: p,
            feature_names,
            trees,
            feature_stats: Vec::new(),
            calibration: Calibration { sorted_scores: Vec::new(), n_train: data.n_rows() as u64, psi: 0 },
            threshold: 0.5,
        };
        forest.calibration.psi = forest.params.max_samples;
        forest.calibrate(data, rng);
        forest
    }

    fn calibrate(&mut self, data: &Matrix, rng: &mut Xoshiro256PlusPlus) {
        let n = data.n_rows();
        let d = data.n_cols();
        let k = self.params.calibration_rows.min(n);
        let mut picked = index::sample(rng, n, k).into_vec();
        picked.sort_unstable();
        let mut sample = Vec::with_capacity(k * d);
        for &r in &picked {
            sample.extend_from_slice(data.row(r));
        }
        let sample = Matrix::new(sample, d, &[]).expect("rows of a validated matrix");
        let mut scores = self.score_matrix(&sample);
        scores.sort_unstable_by(f32::total_cmp);
        self.calibration.sorted_scores = scores;
        self.feature_stats = (0..d)
            .map(|f| {
                let mut col: Vec<f32> = (0..k).map(|r| sample.row(r)[f]).filter(|v| !v.is_nan()).collect();
                FeatureStats {
                    p05: quantile_unsorted(&mut col, 0.05),
                    p50: quantile_unsorted(&mut col, 0.50),
                    p95: quantile_unsorted(&mut col, 0.95),
                }
            })
            .collect();
        self.threshold = match self.params.contamination {
            Contamination::Auto => 0.5,
            Contamination::Fraction(c) => {
                // scikit-learn sets the offset from the scores of all training rows; beyond
                // THRESHOLD_ROWS a uniform sample of that many rows estimates the quantile
                // (standard error of a 1 % quantile from 100 000 rows: ±0.03 percentage points).
                let mut scores = if n <= THRESHOLD_ROWS {
                    self.score_matrix(data)
                } else {
                    let mut picked = index::sample(rng, n, THRESHOLD_ROWS).into_vec();
                    picked.sort_unstable();
                    let mut rows = Vec::with_capacity(THRESHOLD_ROWS * d);
                    for &r in &picked {
                        rows.extend_from_slice(data.row(r));
                    }
                    self.score_matrix(&Matrix::new(rows, d, &[]).expect("rows of a validated matrix"))
                };
                scores.sort_unstable_by(f32::total_cmp);
                quantile(&scores, 1.0 - c)
            }
        };
    }

    /// Validated hyper-parameters.
    pub fn params(&self) -> &ValidParams {
        &self.params
    }

    /// Feature names in model order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.n_trees()
    }

    /// Total number of nodes over all trees.
    pub fn n_nodes(&self) -> usize {
        self.trees.nodes.len()
    }

    /// Anomaly-score threshold used for labels.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Rows the model was trained on.
    pub fn n_train(&self) -> u64 {
        self.calibration.n_train
    }

    /// Per-feature training statistics (p05, p50, p95).
    pub fn feature_stats(&self) -> &[FeatureStats] {
        &self.feature_stats
    }

    /// Calibration data.
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    fn normalise(&self, path_sum: f32) -> f32 {
        let mean = path_sum as f64 / self.trees.n_trees() as f64;
        2f64.powf(-mean / average_path_length(self.params.max_samples)) as f32
    }

    fn check_width(&self, got: usize) -> Result<()> {
        if got != self.n_features() {
            return Err(EngineError::FeatureCount { expected: self.n_features(), got });
        }
        Ok(())
    }

    /// Anomaly scores of all rows of `data` (higher = more anomalous), in row order.
    /// Batches larger than one chunk are scored in parallel on the current rayon pool.
    pub fn score_samples(&self, data: &Matrix) -> Result<Vec<f32>> {
        self.check_width(data.n_cols())?;
        Ok(self.score_matrix(data))
    }

    fn score_matrix(&self, data: &Matrix) -> Vec<f32> {
        let d = data.n_cols();
        let mut out = vec![0f32; data.n_rows()];
        let score_chunk = |rows: &[f32], out: &mut [f32]| {
            for (block, o) in rows.chunks(BLOCK * d).zip(out.chunks_mut(BLOCK)) {
                score::path_sums_block(&self.trees, block, d, o);
                for v in o.iter_mut() {
                    *v = self.normalise(*v);
                }
            }
        };
        let n = data.n_rows();
        let threads = rayon::current_num_threads();
        if n <= SEQUENTIAL_ROWS || threads == 1 {
            score_chunk(data.as_slice(), &mut out);
        } else {
            // A few chunks per thread balance the load; whole lane groups keep the kernel full.
            let chunk = n.div_ceil(4 * threads).next_multiple_of(score::LANES).min(CHUNK_ROWS);
            data.as_slice()
                .par_chunks(chunk * d)
                .zip(out.par_chunks_mut(chunk))
                .for_each(|(rows, o)| score_chunk(rows, o));
        }
        out
    }

    /// Anomaly score of one row; no heap allocation. NaN is a missing value; ±inf is an error.
    pub fn score_row(&self, row: &[f32]) -> Result<f32> {
        self.check_width(row.len())?;
        check_row(row, &self.feature_names)?;
        Ok(self.normalise(score::path_sum_row(&self.trees, row)))
    }

    /// True when `anomaly_score` is above the model's threshold.
    pub fn is_anomaly(&self, anomaly_score: f32) -> bool {
        anomaly_score > self.threshold
    }

    /// Score, label, grade and severity of every row in one pass; with `explain_top = Some(k)`
    /// each row also carries its `k` most important features (the same walk yields both).
    pub fn assess(&self, data: &Matrix, explain_top: Option<usize>) -> Result<Vec<Assessment>> {
        self.check_width(data.n_cols())?;
        let Some(k) = explain_top else {
            let scores = self.score_matrix(data);
            return Ok(scores.into_iter().map(|s| self.finish(s, Vec::new())).collect());
        };
        let n = data.n_rows();
        let one = |r: usize| {
            let (score, expl) = self.explain_unchecked(data.row(r), k);
            self.finish(score, expl)
        };
        Ok(if n <= 64 { (0..n).map(one).collect() } else { (0..n).into_par_iter().map(one).collect() })
    }

    fn finish(&self, anomaly_score: f32, explanation: Vec<Attribution>) -> Assessment {
        let grade = self.calibration.grade(anomaly_score);
        Assessment {
            anomaly_score,
            is_anomaly: self.is_anomaly(anomaly_score),
            grade,
            severity: Severity::from_grade(grade),
            explanation,
        }
    }

    /// Score of one row and its `top` features by attribution weight (see [`crate::explain`]).
    pub fn explain_row(&self, row: &[f32], top: usize) -> Result<(f32, Vec<Attribution>)> {
        self.check_width(row.len())?;
        check_row(row, &self.feature_names)?;
        Ok(self.explain_unchecked(row, top))
    }

    fn explain_unchecked(&self, row: &[f32], top: usize) -> (f32, Vec<Attribution>) {
        let mut bits = vec![0f64; self.n_features()];
        let counts = &self.trees.counts;
        let sum = score::walk_row(&self.trees, row, |feature, parent, child| {
            bits[feature] += (counts[parent] as f64 / counts[child] as f64).log2();
        });
        let total: f64 = bits.iter().sum();
        let mut order: Vec<usize> = (0..bits.len()).filter(|&f| bits[f] > 0.0).collect();
        order.sort_by(|&a, &b| bits[b].total_cmp(&bits[a]).then(a.cmp(&b)));
        order.truncate(top);
        let attributions = order
            .into_iter()
            .map(|f| {
                let st = self.feature_stats[f];
                Attribution {
                    feature: f,
                    name: self.feature_names[f].clone(),
                    weight: (bits[f] / total) as f32,
                    direction: st.direction(row[f]),
                    value: row[f],
                    normal_low: st.p05,
                    normal_high: st.p95,
                }
            })
            .collect();
        (self.normalise(sum), attributions)
    }
}
