//! Isolation trees: the flat node layout shared by all trees and the random tree builder.
//!
//! Every tree is stored as a slice of 8-byte [`Node`]s inside one contiguous array. Children
//! are allocated in pairs (`left`, `left + 1`), so a node needs a single child index. Leaves
//! point at themselves with a `+inf` threshold: walking a leaf is a no-op, which lets the
//! scorer take exactly `depth` branch-free steps per tree for every row.

use rand::Rng;
use rand::seq::{SliceRandom, index};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::matrix::Matrix;
use crate::packed::Packed;
use crate::params::ValidParams;

/// One node. Internal: rows with `x[feature] > threshold` go to `left + 1`, others to `left`.
/// Leaf: `left` is the node's own index and `threshold` is `+inf`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub(crate) struct Node {
    pub threshold: f32,
    pub feature: u16,
    pub left: u16,
}

// The scorer's cache footprint depends on this.
const _: () = assert!(std::mem::size_of::<Node>() == 8);

/// Expected path length of an unsuccessful search in a binary search tree of `n` items,
/// `c(n)` in Liu et al. (2008), with scikit-learn's special cases for n ≤ 2.
pub fn average_path_length(n: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// All trees of a forest, concatenated.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Trees {
    pub nodes: Vec<Node>,
    /// Path length collected at each leaf (0 for internal nodes).
    pub values: Vec<f32>,
    /// Training rows that reached each node.
    pub counts: Vec<u32>,
    /// Where missing values go at each internal node: the child that held more training rows.
    pub nan_right: Vec<bool>,
    /// Start of tree `t` is `offsets[t]`; `offsets[n_trees]` is the total node count.
    pub offsets: Vec<u32>,
    /// Depth of the deepest leaf of each tree: the number of steps a walk needs.
    pub depths: Vec<u8>,
    /// The nodes again in the block kernel's form (see [`KeyNode`]).
    pub keyed: Vec<KeyNode>,
    /// The trees in the vector kernel's layout, built on first use.
    packed: PackedCell,
}

/// A lazily built [`Packed`] copy. It is derived data: two forests with the same trees are
/// equal whether or not either has built it yet.
#[derive(Debug, Clone, Default)]
struct PackedCell(std::sync::OnceLock<Option<Packed>>);

impl PartialEq for PackedCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A node as the batch kernel reads it: the threshold as an order-preserving integer key
/// and the feature pre-multiplied by the kernel's lane count, so a step is a load, an
/// integer compare and an add-with-carry.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(8))]
pub(crate) struct KeyNode {
    pub key: u32,
    pub offset: u16,
    pub left: u16,
}

/// Maps a non-NaN f32 to a u32 whose unsigned order is the float order (-0.0 and +0.0 map to
/// the same key, as they compare equal).
#[inline(always)]
pub(crate) const fn f32_key(v: f32) -> u32 {
    let bits = (v + 0.0).to_bits();
    if bits & 0x8000_0000 != 0 { !bits } else { bits | 0x8000_0000 }
}

/// The inverse of [`f32_key`] (for keys of non-NaN values; `-0.0` comes back as `+0.0`).
#[inline]
pub(crate) const fn from_key(key: u32) -> f32 {
    f32::from_bits(if key & 0x8000_0000 != 0 { key & 0x7FFF_FFFF } else { !key })
}

/// Keys of a snapped threshold end in these bits (see [`snap_threshold`]).
pub(crate) const SNAP_BITS: u32 = 31;

/// Moves a split threshold to the nearest value whose key ends in [`SNAP_BITS`] that still
/// splits `[min, max]` the same way at its ends (`min` left, `max` right), or leaves it when
/// none does (values within ~32 ulps). A shift of at most 31 ulps is as uniform a draw as
/// the original; it lets the vector kernel decide every comparison from the upper 27 key
/// bits (see `packed.rs`).
pub(crate) fn snap_threshold(t: f32, min: f32, max: f32) -> f32 {
    let key = f32_key(t);
    let up = from_key(key | SNAP_BITS);
    if up < max {
        return up;
    }
    match (key & !SNAP_BITS).checked_sub(1).map(from_key) {
        Some(down) if down >= min => down,
        _ => t,
    }
}

impl Trees {
    /// Empty storage with room for `n_trees` trees of `n_nodes` nodes in all.
    pub fn with_capacity(n_trees: usize, n_nodes: usize) -> Self {
        let mut offsets = Vec::with_capacity(n_trees + 1);
        offsets.push(0);
        Trees {
            nodes: Vec::with_capacity(n_nodes),
            values: Vec::with_capacity(n_nodes),
            counts: Vec::with_capacity(n_nodes),
            nan_right: Vec::with_capacity(n_nodes),
            offsets,
            depths: Vec::with_capacity(n_trees),
            keyed: Vec::with_capacity(n_nodes),
            packed: PackedCell::default(),
        }
    }

    /// The vector kernel's layout of these trees (built once, on first call), or `None` when
    /// the forest is too deep or too wide for it. Call only once every tree is pushed.
    pub fn packed(&self) -> Option<&Packed> {
        self.packed.0.get_or_init(|| Packed::build(self)).as_ref()
    }

    /// Recomputes the kernels' copies after `nodes` were edited in place (tests only).
    #[cfg(test)]
    pub fn rebuild_derived(&mut self) {
        for (k, n) in self.keyed.iter_mut().zip(&self.nodes) {
            k.key = f32_key(n.threshold);
        }
        self.packed = PackedCell::default();
    }

    pub fn n_trees(&self) -> usize {
        self.depths.len()
    }

    pub fn tree_range(&self, t: usize) -> std::ops::Range<usize> {
        self.offsets[t] as usize..self.offsets[t + 1] as usize
    }

    pub fn push(&mut self, tree: &TreeBuf) {
        debug_assert!(self.packed.0.get().is_none(), "trees pushed after packing");
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.nodes.extend_from_slice(&tree.nodes);
        self.keyed.extend(tree.nodes.iter().map(|n| KeyNode {
            key: f32_key(n.threshold),
            offset: n.feature * crate::score::LANES as u16,
            left: n.left,
        }));
        self.values.extend_from_slice(&tree.values);
        self.counts.extend_from_slice(&tree.counts);
        self.nan_right.extend_from_slice(&tree.nan_right);
        self.offsets.push(self.nodes.len() as u32);
        self.depths.push(tree.depth);
    }
}

/// One tree before it joins the forest; also what the model decoder rebuilds.
#[derive(Debug, Clone, Default)]
pub(crate) struct TreeBuf {
    pub nodes: Vec<Node>,
    pub values: Vec<f32>,
    pub counts: Vec<u32>,
    pub nan_right: Vec<bool>,
    pub depth: u8,
}

impl TreeBuf {
    /// Appends a pair of placeholder children and returns the left index.
    pub fn alloc_pair(&mut self) -> usize {
        let left = self.nodes.len();
        for _ in 0..2 {
            self.nodes.push(Node { threshold: f32::INFINITY, feature: 0, left: 0 });
            self.values.push(0.0);
            self.counts.push(0);
            self.nan_right.push(false);
        }
        left
    }

    pub fn with_root() -> Self {
        let mut t = TreeBuf { nodes: Vec::with_capacity(64), ..Default::default() };
        t.nodes.push(Node { threshold: f32::INFINITY, feature: 0, left: 0 });
        t.values.push(0.0);
        t.counts.push(0);
        t.nan_right.push(false);
        t
    }

    pub fn set_leaf(&mut self, i: usize, depth: usize, count: usize) {
        self.set_leaf_with(i, depth, count, average_path_length(count));
    }

    /// [`TreeBuf::set_leaf`] with `c(count)` already known (the builder tabulates it).
    pub fn set_leaf_with(&mut self, i: usize, depth: usize, count: usize, c: f64) {
        self.nodes[i] = Node { threshold: f32::INFINITY, feature: 0, left: i as u16 };
        self.values[i] = (depth as f64 + c) as f32;
        self.counts[i] = count as u32;
        self.depth = self.depth.max(depth as u8);
    }

    pub fn set_split(&mut self, i: usize, feature: u16, threshold: f32, nan_right: bool, left: usize) {
        self.nodes[i] = Node { threshold, feature, left: left as u16 };
        self.nan_right[i] = nan_right;
    }

    /// Fills internal-node counts from the leaves (children always follow their parent).
    pub fn sum_counts(&mut self) {
        for i in (0..self.nodes.len()).rev() {
            let n = self.nodes[i];
            if n.left as usize != i {
                let l = n.left as usize;
                self.counts[i] = self.counts[l] + self.counts[l + 1];
            }
        }
    }
}

/// Draws the row sample of every tree: `n_trees` blocks of `psi` distinct rows, flattened.
///
/// Each block is a uniform random `psi`-subset, as scikit-learn draws it, but the blocks are
/// taken in turn from random permutations of all rows instead of independently: a tree
/// takes the next `psi` rows of the current permutation, and a new permutation starts when
/// one runs out (rows the straddling tree already holds are moved to its end). Every row
/// therefore lands in the samples of `n_trees·psi/n` trees, ±1, instead of a binomial
/// number. Relabelling rows leaves the procedure unchanged, so each block's marginal
/// distribution is still uniform; only the variation between rows of how often they were
/// seen is removed, which lowers the variance of the scores of training rows.
///
/// Only used when the trees together need more rows than there are (`psi·n_trees > n`);
/// otherwise each tree draws its own rows with [`sparse_sample`] and exposure is 0 or 1 anyway.
pub(crate) fn balanced_samples(
    rng: &mut Xoshiro256PlusPlus,
    n: usize,
    psi: usize,
    n_trees: usize,
) -> Vec<u32> {
    let total = psi * n_trees;
    let mut perm: Vec<u32> = (0..n as u32).collect();
    perm.shuffle(rng);
    let mut out = Vec::with_capacity(total);
    let mut cursor = 0;
    for _ in 0..n_trees {
        let take = psi.min(n - cursor);
        out.extend_from_slice(&perm[cursor..cursor + take]);
        cursor += take;
        if take < psi {
            // The last `take` rows of `perm` belong to this tree: reshuffle the others to
            // start the next permutation and keep this tree's rows for its end.
            let (others, mine) = perm.split_at_mut(n - take);
            others.shuffle(rng);
            mine.shuffle(rng);
            out.extend_from_slice(&perm[..psi - take]);
            cursor = psi - take;
        }
    }
    out
}

/// A uniform random `k`-subset of `0..n` for `k` much smaller than `n`, by Floyd's algorithm
/// (Bentley & Floyd, "A sample of brilliance", CACM 1987) with a small open-addressing set:
/// `k` draws and no allocation proportional to `n`. The order of the rows is irrelevant to
/// the tree built from them.
pub(crate) fn sparse_sample(rng: &mut Xoshiro256PlusPlus, n: usize, k: usize) -> Vec<u32> {
    debug_assert!(k <= n && n <= u32::MAX as usize);
    const EMPTY: u32 = u32::MAX;
    let slots = (2 * k).next_power_of_two();
    let mask = slots - 1;
    let mut table = vec![EMPTY; slots];
    let mut out = Vec::with_capacity(k);
    let insert = |v: u32, table: &mut [u32]| -> bool {
        // Fibonacci hashing spreads consecutive row numbers over the table.
        let mut h = (v.wrapping_mul(0x9E37_79B9) as usize) & mask;
        loop {
            if table[h] == EMPTY {
                table[h] = v;
                return true;
            }
            if table[h] == v {
                return false;
            }
            h = (h + 1) & mask;
        }
    };
    for j in (n - k)..n {
        let t = rng.random_range(0..=j as u32);
        // `j` itself cannot be in the set yet: only values below it were drawn so far.
        let pick = if insert(t, &mut table) {
            t
        } else {
            insert(j as u32, &mut table);
            j as u32
        };
        out.push(pick);
    }
    out
}

/// The two uniform variates that decide a tree's root split: `feature` picks the root feature
/// among the tree's candidates (⌊feature·m⌋ in their sorted order), `threshold` places the
/// threshold between the feature's min and max.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RootPlan {
    pub feature: f64,
    pub threshold: f64,
}

/// Root variates for all trees, stratified across the forest (Latin-hypercube style).
///
/// Each tree's root variates are still uniform on [0, 1) — so each tree, taken alone, is an
/// ordinary isolation tree — but the forest's roots are spread evenly: the feature variates
/// fall one per stratum of width 1/T, so every candidate feature roots ~T/m trees, and the
/// thresholds of the trees that share a root feature again fall one per stratum. The root
/// split shapes a tree most; spreading it removes the part of the forest-to-forest
/// variation that comes from uneven root choices (e.g. one feature rooting 9 of 100 trees
/// and another 2), without changing the expected score of any row.
pub(crate) fn root_plans(rng: &mut Xoshiro256PlusPlus, n_trees: usize, candidates: usize) -> Vec<RootPlan> {
    let strata = |rng: &mut Xoshiro256PlusPlus, k: usize| -> Vec<f64> {
        let mut perm: Vec<usize> = (0..k).collect();
        perm.shuffle(rng);
        perm.into_iter().map(|j| (j as f64 + rng.random::<f64>()) / k as f64).collect()
    };
    let feature = strata(rng, n_trees);
    let group = |v: f64| ((v * candidates as f64) as usize).min(candidates - 1);
    let mut threshold = vec![0f64; n_trees];
    for g in 0..candidates {
        let members: Vec<usize> = (0..n_trees).filter(|&t| group(feature[t]) == g).collect();
        for (&t, u) in members.iter().zip(strata(rng, members.len())) {
            threshold[t] = u;
        }
    }
    feature.into_iter().zip(threshold).map(|(feature, threshold)| RootPlan { feature, threshold }).collect()
}

/// Builds one isolation tree on the sampled `rows` of `data`: its root split follows `root`,
/// every other choice is drawn with `rng`.
pub(crate) fn build_tree(
    data: &Matrix,
    rows: &[u32],
    root: RootPlan,
    p: &ValidParams,
    c_table: &[f64],
    rng: &mut Xoshiro256PlusPlus,
) -> TreeBuf {
    let psi = p.max_samples;
    let d = data.n_cols();
    let mut features: Vec<u16> = if p.features_per_tree == d {
        (0..d as u16).collect()
    } else {
        let mut f: Vec<u16> =
            index::sample(rng, d, p.features_per_tree).into_iter().map(|i| i as u16).collect();
        f.sort_unstable();
        f
    };
    // Column-major copy of the sample: the builder scans one feature of a node at a time.
    let mut columns: Vec<f32> = Vec::with_capacity(d * psi);
    assert_eq!(rows.len(), psi);
    let src = data.as_slice();
    let starts: Vec<usize> = rows.iter().map(|&r| r as usize * d).collect();
    assert!(starts.iter().all(|&s| s + d <= src.len()), "sampled rows lie inside the matrix");
    let dst = columns.as_mut_ptr();
    for f in 0..d {
        // The sampled rows stay in cache after the first feature, so the strided reads are
        // cheap and the writes are sequential.
        for (i, &s) in starts.iter().enumerate() {
            // SAFETY: s + f < s + d <= src.len() (asserted above); f * psi + i < d * psi, the
            // capacity of `columns`.
            unsafe { dst.add(f * psi + i).write(*src.get_unchecked(s + f)) };
        }
    }
    // SAFETY: the loops above wrote all d × psi slots.
    unsafe { columns.set_len(d * psi) };
    let any_nan = data.has_nan() && columns.iter().any(|v| v.is_nan());
    let has_nan: Vec<bool> = if any_nan {
        columns.chunks(psi).map(|c| c.iter().any(|v| v.is_nan())).collect()
    } else {
        vec![false; d]
    };
    let mut builder = Builder {
        columns: &columns,
        has_nan,
        scratch: vec![0; psi],
        psi,
        max_depth: p.max_depth,
        rng,
        order: (0..psi as u32).collect(),
        tree: TreeBuf::with_root(),
        root: Some(root),
        c_table,
    };
    builder.grow(0, 0, psi, 0, &mut features);
    builder.tree.sum_counts();
    builder.tree
}

struct Builder<'a> {
    columns: &'a [f32],
    /// Whether each sampled column holds a missing value (then partitions are three-way).
    has_nan: Vec<bool>,
    /// Right-hand side of a two-way partition.
    scratch: Vec<u32>,
    psi: usize,
    max_depth: usize,
    rng: &'a mut Xoshiro256PlusPlus,
    /// Sample positions, partitioned in place as the tree grows.
    order: Vec<u32>,
    tree: TreeBuf,
    /// Variates for the root split; taken (once) by the first split.
    root: Option<RootPlan>,
    /// `c(n)` for n = 0..=psi, so leaves need no logarithm.
    c_table: &'a [f64],
}

impl Builder<'_> {
    fn grow(&mut self, node: usize, lo: usize, hi: usize, depth: usize, features: &mut [u16]) {
        let n = hi - lo;
        if depth >= self.max_depth || n <= 1 {
            self.tree.set_leaf_with(node, depth, n, self.c_table[n]);
            return;
        }
        let plan = self.root.take();
        let Some((feature, min, max)) = self.pick_feature(lo, hi, features, plan.map(|r| r.feature)) else {
            self.tree.set_leaf_with(node, depth, n, self.c_table[n]);
            return;
        };
        // Uniform threshold in [min, max); rounding to f32 may reach max, which would leave the
        // right child empty, so fall back to min as scikit-learn does.
        let u: f64 = match plan {
            Some(r) => r.threshold,
            None => self.rng.random(),
        };
        let mut threshold = (min as f64 + u * (max as f64 - min as f64)) as f32;
        if threshold >= max {
            threshold = min;
        }
        let threshold = snap_threshold(threshold, min, max);
        let (split, nan_right) = if self.has_nan[feature as usize] {
            self.partition_with_nan(lo, hi, feature, threshold)
        } else {
            (self.partition(lo, hi, feature, threshold), false)
        };
        let left = self.tree.alloc_pair();
        self.tree.set_split(node, feature, threshold, nan_right, left);
        self.grow(left, lo, split, depth + 1, features);
        self.grow(left + 1, split, hi, depth + 1, features);
    }

    /// Moves the rows of `lo..hi` with `x[feature] <= threshold` to the front, without a
    /// data-dependent branch; returns the split position. (Order within a side is irrelevant:
    /// nothing later depends on it.)
    fn partition(&mut self, lo: usize, hi: usize, feature: u16, threshold: f32) -> usize {
        let col = &self.columns[feature as usize * self.psi..(feature as usize + 1) * self.psi];
        let order = &mut self.order[lo..hi];
        let (mut l, mut r) = (0, 0);
        for i in 0..order.len() {
            let row = order[i];
            let left = col[row as usize] <= threshold;
            // `l <= i`, so this write never clobbers a row not yet read.
            order[l] = row;
            self.scratch[r] = row;
            l += left as usize;
            r += !left as usize;
        }
        order[l..].copy_from_slice(&self.scratch[..r]);
        lo + l
    }

    /// Three-way partition `[<= threshold | NaN | > threshold]`; missing values join the side
    /// with more rows. Returns the split position and whether NaN goes right.
    fn partition_with_nan(&mut self, lo: usize, hi: usize, feature: u16, threshold: f32) -> (usize, bool) {
        let col = &self.columns[feature as usize * self.psi..(feature as usize + 1) * self.psi];
        let (mut i, mut mid, mut j) = (lo, lo, hi);
        while mid < j {
            let v = col[self.order[mid] as usize];
            if v <= threshold {
                self.order.swap(i, mid);
                i += 1;
                mid += 1;
            } else if v.is_nan() {
                mid += 1;
            } else {
                j -= 1;
                self.order.swap(mid, j);
            }
        }
        let (n_left, n_right) = (i - lo, hi - j);
        // Missing values follow the larger side, at training and at scoring.
        let nan_right = n_right > n_left;
        (if nan_right { i } else { j }, nan_right)
    }

    /// Draws features without replacement until one is not constant on the node's rows,
    /// like scikit-learn's random splitter; returns it with the node's min and max. The first
    /// draw uses `first` (a uniform variate) when given.
    fn pick_feature(
        &mut self,
        lo: usize,
        hi: usize,
        features: &mut [u16],
        first: Option<f64>,
    ) -> Option<(u16, f32, f32)> {
        let m = features.len();
        for k in 0..m {
            let j = match first {
                Some(v) if k == 0 => ((v * m as f64) as usize).min(m - 1),
                _ => self.rng.random_range(k..m),
            };
            features.swap(k, j);
            let f = features[k] as usize;
            let col = &self.columns[f * self.psi..(f + 1) * self.psi];
            let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
            if self.has_nan[f] {
                for &r in &self.order[lo..hi] {
                    // f32::min/max return the other operand for NaN: missing values are skipped.
                    let v = col[r as usize];
                    min = min.min(v);
                    max = max.max(v);
                }
            } else {
                for &r in &self.order[lo..hi] {
                    let v = col[r as usize];
                    min = if v < min { v } else { min };
                    max = if v > max { v } else { max };
                }
            }
            if min < max {
                return Some((features[k], min, max));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn snapped_thresholds_split_like_the_drawn_one(a in -1e6f32..1e6, b in -1e6f32..1e6, u in 0f64..1.0) {
            let (min, max) = if a < b { (a, b) } else if b < a { (b, a) } else { return Ok(()) };
            let t = ((min as f64 + u * (max as f64 - min as f64)) as f32).min(max.next_down());
            let s = snap_threshold(t, min, max);
            prop_assert!(min <= s && s < max, "{min} <= {s} < {max}");
            prop_assert!((f32_key(s) as i64 - f32_key(t) as i64).abs() <= 32);
            // Snapping fails only when no snapped key lies in [min, max).
            let snappable = (f32_key(min)..f32_key(max)).any(|k| k & SNAP_BITS == SNAP_BITS);
            prop_assert_eq!(f32_key(s) & SNAP_BITS == SNAP_BITS, snappable);
        }

        #[test]
        fn from_key_inverts_f32_key(v in proptest::num::f32::NORMAL | proptest::num::f32::SUBNORMAL | proptest::num::f32::ZERO) {
            prop_assert_eq!(from_key(f32_key(v)), v + 0.0);
        }
    }

    #[test]
    fn sparse_sample_draws_distinct_rows_uniformly() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let (n, k, rounds) = (50usize, 10usize, 20_000usize);
        let mut hits = vec![0usize; n];
        for _ in 0..rounds {
            let mut s = sparse_sample(&mut rng, n, k);
            s.sort_unstable();
            s.dedup();
            assert_eq!(s.len(), k, "rows are distinct");
            for r in s {
                hits[r as usize] += 1;
            }
        }
        // Each row is picked with probability k/n: 4 000 expected, binomial sd ≈ 57.
        let expected = (rounds * k / n) as f64;
        for (row, &h) in hits.iter().enumerate() {
            assert!((h as f64 - expected).abs() < 6.0 * 57.0, "row {row}: {h} vs {expected}");
        }
    }

    #[test]
    fn balanced_samples_spread_rows_evenly_without_repeats_in_a_tree() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let (n, psi, trees) = (1000usize, 256usize, 100usize);
        let all = balanced_samples(&mut rng, n, psi, trees);
        let mut seen = vec![0usize; n];
        for tree in all.chunks(psi) {
            let mut t = tree.to_vec();
            t.sort_unstable();
            t.dedup();
            assert_eq!(t.len(), psi, "no row twice in one tree");
            for &r in tree {
                seen[r as usize] += 1;
            }
        }
        // 25 600 draws over 1 000 rows: every row 25 or 26 times.
        assert!(seen.iter().all(|&c| c == 25 || c == 26), "{:?}", &seen[..20]);
    }

    #[test]
    fn average_path_length_matches_reference_values() {
        // Reference values from the closed form 2H(n-1) - 2(n-1)/n with H(i) ≈ ln(i) + γ,
        // as used by scikit-learn (`_average_path_length`).
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        let c256 = 2.0 * ((255f64).ln() + 0.5772156649015329) - 2.0 * 255.0 / 256.0;
        assert!((average_path_length(256) - c256).abs() < 1e-12);
        assert!((average_path_length(256) - 10.244_770_920_116_851).abs() < 1e-9);
    }
}
