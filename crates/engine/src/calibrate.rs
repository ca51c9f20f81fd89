//! Calibration: from a raw anomaly score to a grade, a severity and a confidence.
//!
//! * **grade** ∈ [0, 1] is the empirical CDF of the anomaly scores of a random sample of
//!   training rows (the calibration sample, [`crate::ForestParams::calibration_rows`] rows):
//!   the fraction of those rows whose score is ≤ the row's score. A grade of 0.995 reads
//!   "more anomalous than 99.5 % of the training data".
//! * **severity** cuts the grade at fixed points: `critical` ≥ 0.999, `high` ≥ 0.99,
//!   `medium` ≥ 0.95, `low` below.
//! * **confidence** ∈ [0, 1) grows with the training size `n` relative to the per-tree sample
//!   size ψ: `1 − sqrt(ψ / n)`. Each tree sees ψ rows; with n/ψ disjoint samples' worth of
//!   data the trees are close to independent and the spread of the averaged path length
//!   shrinks like `1/sqrt(n/ψ)`. n = ψ gives 0 (every tree saw the same rows), n = 100ψ 0.9.
//!   It is a heuristic for how much the data supports the model, not a probability.

use std::fmt;

/// Grade at or above which a row is `critical`.
pub const CRITICAL_GRADE: f32 = 0.999;
/// Grade at or above which a row is `high`.
pub const HIGH_GRADE: f32 = 0.99;
/// Grade at or above which a row is `medium`.
pub const MEDIUM_GRADE: f32 = 0.95;

/// How urgent an anomaly is, from its grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// grade < 0.95
    Low,
    /// 0.95 ≤ grade < 0.99
    Medium,
    /// 0.99 ≤ grade < 0.999
    High,
    /// grade ≥ 0.999
    Critical,
}

impl Severity {
    /// Severity for a grade.
    pub fn from_grade(grade: f32) -> Self {
        if grade >= CRITICAL_GRADE {
            Severity::Critical
        } else if grade >= HIGH_GRADE {
            Severity::High
        } else if grade >= MEDIUM_GRADE {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// Lower-case name used in files and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Calibration data kept in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Anomaly scores of the calibration sample, ascending.
    pub(crate) sorted_scores: Vec<f32>,
    /// Rows in the training data.
    pub(crate) n_train: u64,
    /// Rows per tree (ψ).
    pub(crate) psi: usize,
}

impl Calibration {
    /// Fraction of calibration scores ≤ `score`.
    pub fn grade(&self, score: f32) -> f32 {
        if self.sorted_scores.is_empty() {
            return 0.0;
        }
        let below = self.sorted_scores.partition_point(|&s| s <= score);
        below as f32 / self.sorted_scores.len() as f32
    }

    /// Confidence in the model given the training size; see the module docs.
    pub fn confidence(&self) -> f32 {
        let ratio = self.psi as f64 / self.n_train.max(1) as f64;
        (1.0 - ratio.sqrt()).clamp(0.0, 1.0) as f32
    }

    /// Number of calibration scores.
    pub fn len(&self) -> usize {
        self.sorted_scores.len()
    }

    /// True when no calibration score is stored.
    pub fn is_empty(&self) -> bool {
        self.sorted_scores.is_empty()
    }
}

/// Linear-interpolation quantile of ascending `sorted` (numpy's default method).
pub(crate) fn quantile(sorted: &[f32], q: f64) -> f32 {
    match sorted.len() {
        0 => f32::NAN,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let frac = pos - lo as f64;
            (sorted[lo] as f64 + frac * (sorted[hi] as f64 - sorted[lo] as f64)) as f32
        }
    }
}

/// The same linear-interpolation quantile without sorting: `select_nth_unstable` finds the
/// lower neighbour in O(n), the upper one is the minimum of what lies above it. Reorders
/// `values`; NaN must have been removed.
pub(crate) fn quantile_unsorted(values: &mut [f32], q: f64) -> f32 {
    match values.len() {
        0 => f32::NAN,
        1 => values[0],
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let (_, &mut low, above) = values.select_nth_unstable_by(lo, f32::total_cmp);
            let high = above.iter().copied().fold(f32::INFINITY, f32::min);
            let high = if lo + 1 < n { high } else { low };
            (low as f64 + (pos - lo as f64) * (high as f64 - low as f64)) as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grade_is_the_empirical_cdf() {
        let c = Calibration { sorted_scores: vec![0.3, 0.4, 0.5, 0.6], n_train: 100, psi: 4 };
        assert_eq!(c.grade(0.1), 0.0);
        assert_eq!(c.grade(0.45), 0.5);
        assert_eq!(c.grade(0.6), 1.0);
        assert!((c.confidence() - 0.8).abs() < 1e-6);
    }

    #[test]
    fn severity_cut_points() {
        assert_eq!(Severity::from_grade(0.5), Severity::Low);
        assert_eq!(Severity::from_grade(0.95), Severity::Medium);
        assert_eq!(Severity::from_grade(0.995), Severity::High);
        assert_eq!(Severity::from_grade(1.0), Severity::Critical);
    }

    #[test]
    fn unsorted_quantile_equals_sorted_quantile() {
        let data: Vec<f32> = (0..101).map(|i| ((i * 37) % 101) as f32 * 0.5 - 7.0).collect();
        let mut sorted = data.clone();
        sorted.sort_by(f32::total_cmp);
        for q in [0.0, 0.05, 0.333, 0.5, 0.95, 1.0] {
            let mut scratch = data.clone();
            assert_eq!(quantile_unsorted(&mut scratch, q), quantile(&sorted, q), "q = {q}");
        }
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], 25) == 1.75
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 1.0), 4.0);
    }
}
