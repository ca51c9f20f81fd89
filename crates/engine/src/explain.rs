//! Per-row explanations: which features isolated a row, and how it compares with normal.
//!
//! **Attribution.** Every edge a row takes in a tree moves it from a node that held
//! `n_parent` training rows to a child that held `n_child`; the split separated it from
//! `n_parent − n_child` of them. We credit the split's feature with the information of that
//! step, `log2(n_parent / n_child)` bits. Summed over the path this is `log2(ψ / n_leaf)`:
//! the bits needed to isolate the row in that tree, shared among the features that did the
//! isolating. Summed over all trees and normalised, the weights sum to 1. A row that is
//! extreme in one feature is cut off early and cleanly by splits on that feature in most
//! trees, so that feature collects most of the weight. (The idea of crediting features by
//! how splits along the path isolate a point follows DIFFI, Carletti et al. 2023,
//! "Interpretable Anomaly Detection with DIFFI"; the bits-of-mass weighting is ours.)
//!
//! **Direction and normal range.** Each feature's training p05, p50 and p95 are computed on
//! the calibration sample (missing values ignored). The direction is `above` when the value
//! exceeds the training median, `below` otherwise, `missing` when the value is NaN; the
//! normal range reported is [p05, p95].

use std::fmt;

/// Where a value lies relative to the training median.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Greater than the training median.
    Above,
    /// At or below the training median.
    Below,
    /// The value is missing (NaN).
    Missing,
}

impl Direction {
    /// Lower-case name used in files and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
            Direction::Missing => "missing",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One feature's share in a row's anomaly score.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// Feature position in the model's feature order.
    pub feature: usize,
    /// Feature name.
    pub name: String,
    /// Share of the isolation credited to this feature; the weights of a row sum to 1.
    pub weight: f32,
    /// Where the value lies relative to the training median.
    pub direction: Direction,
    /// The row's value.
    pub value: f32,
    /// Training p05 of this feature.
    pub normal_low: f32,
    /// Training p95 of this feature.
    pub normal_high: f32,
}

/// Summary statistics of one feature over the calibration sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureStats {
    /// 5th percentile.
    pub p05: f32,
    /// Median.
    pub p50: f32,
    /// 95th percentile.
    pub p95: f32,
}

impl FeatureStats {
    /// Direction of `value` relative to the median.
    pub fn direction(&self, value: f32) -> Direction {
        if value.is_nan() {
            Direction::Missing
        } else if value > self.p50 {
            Direction::Above
        } else {
            Direction::Below
        }
    }
}
