//! scikit-learn's random draws, reproduced: with [`RandomStream::ScikitLearn`] a seed grows
//! the very forest that `sklearn.ensemble.IsolationForest(random_state=seed)` grows on the
//! same `float32` data — the same rows per tree, the same split features and thresholds.
//!
//! People moving a pipeline from scikit-learn can then check anomalyd against their old
//! scores row by row, and the accuracy comparison against `baseline.json` compares the same
//! forests rather than two samples of forests.
//!
//! What scikit-learn 1.9 does, read from its BSD-licensed sources (`ensemble/_bagging.py`,
//! `ensemble/_iforest.py`, `utils/_random.pyx`, `tree/_splitter.pyx`, `tree/_tree.pyx`,
//! `tree/_utils.pxd`) and numpy's legacy `RandomState` (`mtrand.pyx`, `distributions.c`):
//!
//! * Every `RandomState(int)` is an MT19937 seeded by `init_genrand`.
//! * The forest draws one seed per tree: `RandomState(seed).randint(2^31 - 1, size=n_trees)`.
//! * Tree `t`'s rows: `RandomState(seeds[t])` first draws the feature subset and then the
//!   rows, each with `sample_without_replacement` (see [`sample_without_replacement`]).
//! * Tree `t`'s splitter: `RandomState(seeds[t]).randint(2^31 - 1)` seeds the tree's own
//!   `RandomState`, whose `randint(0, 2^31 - 1)` seeds a 32-bit xorshift (`rand_r`) that
//!   draws every split feature and threshold.
//! * Nodes are split depth first, left child first. A split draws features with a
//!   Fisher–Yates walk over a feature array that persists from node to node, skipping
//!   features known to be constant (spread `≤ 1e-7`) at an ancestor, until one is not
//!   constant; the threshold is uniform in `[min, max)` in `f64` (falling back to `min` when
//!   it rounds to `max`); rows with `x ≤ threshold` go left.
//!
//! [`RandomStream::ScikitLearn`]: crate::RandomStream::ScikitLearn

use std::collections::HashSet;

use rand_mt::Mt;

use crate::matrix::Matrix;
use crate::tree::TreeBuf;

/// `np.iinfo(np.int32).max`, the bound scikit-learn draws seeds below.
const MAX_INT: u64 = 0x7FFF_FFFF;
/// `RAND_R_MAX` of scikit-learn's tree code.
const RAND_R_MAX: u32 = 0x7FFF_FFFF;
/// scikit-learn treats a feature whose spread on a node is at most this as constant.
const FEATURE_THRESHOLD: f32 = 1e-7;

/// numpy's legacy `RandomState(seed)` for an integer seed, as far as scikit-learn uses it.
pub(crate) struct RandomState(Mt);

/// The smallest all-ones mask covering `max`.
fn mask_for(max: u64) -> u64 {
    u64::MAX >> max.leading_zeros()
}

impl RandomState {
    pub fn new(seed: u32) -> Self {
        RandomState(Mt::new(seed))
    }

    /// A value uniform in `[0, max]` by masked rejection (`random_interval`), for
    /// `max < 2^32`.
    fn interval(&mut self, max: u64) -> u64 {
        debug_assert!(max <= u32::MAX as u64);
        if max == 0 {
            return 0;
        }
        let mask = mask_for(max);
        loop {
            let v = self.0.next_u32() as u64 & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `randint(high)`: uniform in `[0, high)` (legacy bounded integers; no draw when
    /// `high == 1`).
    pub fn below(&mut self, high: u64) -> u64 {
        debug_assert!(high >= 1);
        self.interval(high - 1)
    }

    /// `permutation(n)`: a Fisher–Yates shuffle of `0..n` from the back.
    fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut out: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            out.swap(i, j);
        }
        out
    }
}

/// scikit-learn's `sample_without_replacement(n, k, method="auto")`: a prefix of a
/// permutation when `0.01 < k/n < 0.99`, otherwise tracking selection (`k/n < 0.2`) or
/// reservoir sampling. The order of the result matters: a feature subset keeps it.
pub(crate) fn sample_without_replacement(rs: &mut RandomState, n: usize, k: usize) -> Vec<u32> {
    let ratio = if n != 0 { k as f64 / n as f64 } else { 1.0 };
    if ratio > 0.01 && ratio < 0.99 {
        let mut p = rs.permutation(n);
        p.truncate(k);
        return p;
    }
    if ratio < 0.2 {
        let mut seen = HashSet::with_capacity(2 * k);
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            let mut j = rs.below(n as u64) as u32;
            while !seen.insert(j) {
                j = rs.below(n as u64) as u32;
            }
            out.push(j);
        }
        return out;
    }
    let mut out: Vec<u32> = (0..k as u32).collect();
    for i in k..n {
        let j = rs.below(i as u64 + 1) as usize;
        if j < k {
            out[j] = i as u32;
        }
    }
    out
}

/// The per-tree seeds scikit-learn's bagging draws from `random_state=seed`.
pub(crate) fn tree_seeds(seed: u32, n_trees: usize) -> Vec<u32> {
    let mut rs = RandomState::new(seed);
    (0..n_trees).map(|_| rs.below(MAX_INT) as u32).collect()
}

/// What one tree draws before it grows: its features (in draw order), its rows, and the
/// splitter's xorshift state.
pub(crate) struct TreeDraws {
    pub features: Vec<u32>,
    pub rows: Vec<u32>,
    pub splitter_state: u32,
}

/// Tree `seed`'s draws on `n` rows of `d` features, `psi` rows and `m` features per tree.
pub(crate) fn tree_draws(seed: u32, n: usize, d: usize, psi: usize, m: usize) -> TreeDraws {
    let mut bag = RandomState::new(seed);
    let features = sample_without_replacement(&mut bag, d, m);
    let rows = sample_without_replacement(&mut bag, n, psi);
    let tree_seed = RandomState::new(seed).below(MAX_INT) as u32;
    let splitter_state = RandomState::new(tree_seed).below(RAND_R_MAX as u64) as u32;
    TreeDraws { features, rows, splitter_state }
}

/// Largest `f32` not above `t`: for every `f32` x, `x <= t` exactly when `x <= floor32(t)`,
/// so the stored threshold splits as scikit-learn's `f64` one does.
fn floor32(t: f64) -> f32 {
    let f = t as f32;
    if f as f64 > t { f.next_down() } else { f }
}

/// Grows one tree exactly as scikit-learn's depth-first builder with its random splitter
/// (`ExtraTreeRegressor(max_features=1)`); `data` holds no missing value.
pub(crate) fn build_tree(data: &Matrix, draws: &TreeDraws, max_depth: usize, c_table: &[f64]) -> TreeBuf {
    let psi = draws.rows.len();
    let m = draws.features.len();
    let d = data.n_cols();
    // Column-major copy of the sample over the tree's own features, in their draw order.
    let mut columns = vec![0f32; m * psi];
    for (i, &r) in draws.rows.iter().enumerate() {
        let row = &data.as_slice()[r as usize * d..(r as usize + 1) * d];
        for (f, &g) in draws.features.iter().enumerate() {
            columns[f * psi + i] = row[g as usize];
        }
    }
    let mut b = Builder {
        columns,
        psi,
        global: &draws.features,
        samples: (0..psi as u32).collect(),
        features: (0..m).collect(),
        constant: vec![0; m],
        state: draws.splitter_state,
        max_depth,
        c_table,
        tree: TreeBuf::with_root(),
    };
    b.grow(0, 0, psi, 0, 0);
    b.tree.sum_counts();
    b.tree
}

struct Builder<'a> {
    columns: Vec<f32>,
    psi: usize,
    /// Data column of each of the tree's features.
    global: &'a [u32],
    /// Sample positions, partitioned in place.
    samples: Vec<u32>,
    /// The splitter's feature array: its order carries over from node to node.
    features: Vec<usize>,
    /// Features known constant, in the order descendants must see them.
    constant: Vec<usize>,
    /// xorshift state (`rand_r`).
    state: u32,
    max_depth: usize,
    c_table: &'a [f64],
    tree: TreeBuf,
}

impl Builder<'_> {
    fn rand_r(&mut self) -> u32 {
        let mut s = if self.state == 0 { 1 } else { self.state };
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        self.state = s;
        s % (RAND_R_MAX + 1)
    }

    fn rand_int(&mut self, low: usize, high: usize) -> usize {
        low + self.rand_r() as usize % (high - low)
    }

    fn rand_uniform(&mut self, low: f64, high: f64) -> f64 {
        (high - low) * self.rand_r() as f64 / RAND_R_MAX as f64 + low
    }

    fn column(&self, f: usize) -> &[f32] {
        &self.columns[f * self.psi..(f + 1) * self.psi]
    }

    fn grow(&mut self, node: usize, start: usize, end: usize, depth: usize, n_constant: usize) {
        let n = end - start;
        // min_samples_split = 2, min_samples_leaf = 1.
        if depth >= self.max_depth || n < 2 {
            self.tree.set_leaf_with(node, depth, n, self.c_table[n]);
            return;
        }
        let (split, n_constant) = self.split(start, end, n_constant);
        let Some((f, threshold, pos)) = split else {
            self.tree.set_leaf_with(node, depth, n, self.c_table[n]);
            return;
        };
        let left = self.tree.alloc_pair();
        // scikit-learn sends missing values to the larger child, the right one on a tie.
        let nan_right = pos - start <= end - pos;
        self.tree.set_split(node, self.global[f] as u16, threshold, nan_right, left);
        self.grow(left, start, pos, depth + 1, n_constant);
        self.grow(left + 1, pos, end, depth + 1, n_constant);
    }

    /// `node_split_random` with one feature per split: the chosen feature, threshold and
    /// split position (or `None` when every feature is constant), and the constant-feature
    /// count the children inherit.
    fn split(&mut self, start: usize, end: usize, n_known: usize) -> (Option<(usize, f32, usize)>, usize) {
        let mut f_i = self.features.len();
        let (mut n_found, mut n_drawn, mut n_total, mut visited) = (0, 0, n_known, 0);
        let mut best = None;
        while f_i > n_total && (visited < 1 || visited <= n_found + n_drawn) {
            visited += 1;
            let mut f_j = self.rand_int(n_drawn, f_i - n_found);
            if f_j < n_known {
                self.features.swap(n_drawn, f_j);
                n_drawn += 1;
                continue;
            }
            f_j += n_found;
            let f = self.features[f_j];
            let col = self.column(f);
            let (mut min, mut max) = (col[self.samples[start] as usize], col[self.samples[start] as usize]);
            for &s in &self.samples[start + 1..end] {
                let v = col[s as usize];
                if v < min {
                    min = v;
                } else if v > max {
                    max = v;
                }
            }
            if max <= min + FEATURE_THRESHOLD {
                self.features.swap(f_j, n_total);
                n_found += 1;
                n_total += 1;
                continue;
            }
            f_i -= 1;
            self.features.swap(f_i, f_j);
            let mut t = self.rand_uniform(min as f64, max as f64);
            if t == max as f64 {
                t = min as f64;
            }
            let threshold = floor32(t);
            let pos = self.partition(start, end, f, threshold);
            if pos == start || pos == end {
                continue;
            }
            best = Some((f, threshold, pos));
        }
        // Ancestors' constants go back in their order; newly found ones join them.
        self.features[..n_known].copy_from_slice(&self.constant[..n_known]);
        let (lo, hi) = (n_known, n_known + n_found);
        self.constant[lo..hi].copy_from_slice(&self.features[lo..hi]);
        (best, n_total)
    }

    /// Moves the rows of `start..end` with `x[f] <= threshold` to the front; returns the
    /// split position. Only the two sets matter later, not their order.
    fn partition(&mut self, start: usize, end: usize, f: usize, threshold: f32) -> usize {
        let (mut p, mut q) = (start, end);
        while p < q {
            if self.columns[f * self.psi + self.samples[p] as usize] <= threshold {
                p += 1;
            } else {
                q -= 1;
                self.samples.swap(p, q);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values were printed by numpy 2.4.6 and scikit-learn 1.9.1, e.g.
    // `np.random.RandomState(0).randint(2**31 - 1, size=3)`; nothing here comes from this code.

    #[test]
    fn per_tree_seeds_match_numpy() {
        assert_eq!(tree_seeds(0, 3), [209_652_396, 398_764_591, 924_231_285]);
        assert_eq!(RandomState::new(7).below(RAND_R_MAX as u64), 327_741_615);
    }

    #[test]
    fn permutation_matches_numpy() {
        assert_eq!(RandomState::new(12345).permutation(10), [0, 7, 3, 9, 6, 4, 1, 8, 5, 2]);
    }

    #[test]
    fn sample_without_replacement_matches_scikit_learn_in_each_regime() {
        let swr = |n, k| sample_without_replacement(&mut RandomState::new(3), n, k);
        // k/n < 0.01: tracking selection.
        assert_eq!(swr(100_000, 5), [71_530, 67_224, 77_049, 59_011, 48_056]);
        // 0.01 < k/n < 0.99: a permutation's prefix.
        assert_eq!(swr(1000, 5), [874, 664, 249, 643, 952]);
        assert_eq!(swr(10, 7), [5, 4, 1, 2, 9, 6, 7]);
        // k/n >= 0.99: reservoir sampling; k == n draws nothing.
        assert_eq!(swr(6, 6), [0, 1, 2, 3, 4, 5]);
        let mut rs = RandomState::new(3);
        let a = sample_without_replacement(&mut rs, 200, 199);
        assert!(!a.contains(&106) && a[..5] == [0, 1, 2, 3, 4]);
        // The stream continues where scikit-learn's does.
        assert_eq!(rs.below(1000), 664);
    }

    #[test]
    fn floor32_keeps_every_comparison_of_the_f64_threshold() {
        for t in [0.1f64, -0.1, 1.0 / 3.0, 1e-30, 16_777_217.0, 2.5] {
            let f = floor32(t);
            assert!(f as f64 <= t && (f.next_up() as f64) > t, "{t}");
        }
    }
}
