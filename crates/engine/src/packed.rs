//! The forest re-laid for the vector kernel ([`crate::score`]'s AVX-512 path).
//!
//! Trees are taken 16 at a time (one per vector lane) and each is expanded into a perfect
//! binary tree of the forest's depth `D` in heap order: node `i` has children `2i + 1` (rows
//! `≤ threshold`) and `2i + 2`. A leaf above depth `D` becomes a chain of padding nodes
//! that always send rows left, down to a slot holding its path length. Every walk then
//! takes exactly `D` steps and a child index is arithmetic, not a load.
//!
//! A node is one 32-bit word: the upper 27 bits of the threshold's order-preserving key
//! ([`f32_key`]) and the feature in the low 5 bits, so one gathered load yields both.
//! Training snaps every threshold to a key whose low 5 bits are all ones
//! ([`crate::tree::snap_threshold`]); for such a threshold `x > t` exactly when `x`'s upper
//! 27 key bits exceed `t`'s, so the truncated comparison is exact. A forest with other
//! thresholds (a model written before snapping, or a split between values a few ulps
//! apart) is not [`Packed::exact`]: the kernel then also notes where a value's upper key bits
//! tie with a threshold's and walks those trees again with exact thresholds
//! ([`exact_leaf`]). Either way results are those of the exact comparison.
//!
//! The four levels nearest the root (15 nodes per tree) are also stored lane-interleaved in
//! `top`, so the kernel keeps them in registers and gathers only the deeper levels.

use crate::tree::{SNAP_BITS, Trees, f32_key};

/// Trees per group: the lanes of a 512-bit vector of 32-bit words.
pub(crate) const GROUP: usize = 16;
/// Levels held in registers.
pub(crate) const TOP_LEVELS: u32 = 4;
/// Nodes of those levels per tree.
pub(crate) const TOP_NODES: usize = (1 << TOP_LEVELS) - 1;
/// Deepest forest laid out this way (2^10 slots per tree); deeper ones use the scalar kernel.
const MAX_DEPTH: u32 = 10;
/// Widest rows the kernel takes: a row's keys fill two 16-lane registers.
pub(crate) const MAX_FEATURES: usize = 32;
/// Bits of a node word that hold the feature.
pub(crate) const FEATURE_MASK: u32 = SNAP_BITS;
/// A padding node: a threshold above every finite value's key, feature 0.
const PAD: u32 = f32_key(f32::INFINITY) & !FEATURE_MASK;

/// A forest in the vector kernel's layout (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Packed {
    /// Whether every threshold is snapped, so truncated comparisons need no tie check.
    pub exact: bool,
    /// Levels of every expanded tree (≥ [`TOP_LEVELS`]).
    pub depth: u32,
    /// Groups of [`GROUP`] trees; the last is padded with trees whose leaves are 0.
    pub groups: usize,
    /// Per group, the top nodes: `top[(g * TOP_NODES + i) * GROUP + lane]` is heap node `i`.
    pub top: Vec<u32>,
    /// Per group, each tree's heap-ordered internal nodes in `2^depth` slots (the last slot
    /// unused): `nodes[(g * GROUP + lane) << depth | i]`.
    pub nodes: Vec<u32>,
    /// Per group, each tree's `2^depth` leaf path lengths, indexed like `nodes`.
    pub leaves: Vec<f32>,
}

impl Packed {
    /// Lays out `trees`, or `None` when the forest is deeper than [`MAX_DEPTH`] or splits on
    /// a feature past [`MAX_FEATURES`] (callers also check that rows are that narrow).
    pub fn build(trees: &Trees) -> Option<Packed> {
        let deepest = trees.depths.iter().copied().max().unwrap_or(0) as u32;
        let widest = trees.nodes.iter().map(|n| n.feature as usize).max().unwrap_or(0);
        if deepest > MAX_DEPTH || widest >= MAX_FEATURES || trees.n_trees() == 0 {
            return None;
        }
        let depth = deepest.max(TOP_LEVELS);
        let groups = trees.n_trees().div_ceil(GROUP);
        let slots = 1usize << depth;
        let mut p = Packed {
            exact: true,
            depth,
            groups,
            top: vec![PAD; groups * TOP_NODES * GROUP],
            nodes: vec![PAD; groups * GROUP * slots],
            leaves: vec![0.0; groups * GROUP * slots],
        };
        for t in 0..trees.n_trees() {
            let base = t * slots;
            p.expand(trees, t, 0, 0, 0, base);
            let (g, lane) = (t / GROUP, t % GROUP);
            for i in 0..TOP_NODES {
                p.top[(g * TOP_NODES + i) * GROUP + lane] = p.nodes[base + i];
            }
        }
        Some(p)
    }

    /// Writes tree `t`'s node `node` (local index) and its subtree at heap slot `heap`.
    fn expand(&mut self, trees: &Trees, t: usize, node: usize, heap: usize, level: u32, base: usize) {
        let first = trees.offsets[t] as usize;
        let n = trees.nodes[first + node];
        let leaf = n.left as usize == node;
        if level == self.depth {
            debug_assert!(leaf, "a tree's depth bounds its leaves");
            self.leaves[base + heap - ((1 << self.depth) - 1)] = trees.values[first + node];
            return;
        }
        if leaf {
            // Both children repeat the leaf: padding sends rows left, so the right copy is
            // never reached, and writing it keeps every slot defined.
            self.nodes[base + heap] = PAD;
            self.expand(trees, t, node, 2 * heap + 1, level + 1, base);
            self.expand(trees, t, node, 2 * heap + 2, level + 1, base);
        } else {
            let key = f32_key(n.threshold);
            self.exact &= key & SNAP_BITS == SNAP_BITS;
            self.nodes[base + heap] = (key & !FEATURE_MASK) | u32::from(n.feature);
            self.expand(trees, t, n.left as usize, 2 * heap + 1, level + 1, base);
            self.expand(trees, t, n.left as usize + 1, 2 * heap + 2, level + 1, base);
        }
    }
}

/// Path length of `row` (no missing values) in tree `t`, with exact thresholds.
pub(crate) fn exact_leaf(trees: &Trees, t: usize, row: &[f32]) -> f32 {
    let first = trees.offsets[t] as usize;
    let mut i = 0usize;
    loop {
        let n = trees.nodes[first + i];
        if n.left as usize == i {
            return trees.values[first + i];
        }
        i = n.left as usize + (row[n.feature as usize] > n.threshold) as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Matrix;
    use crate::{ForestParams, IsolationForest};

    /// The packed layout walked in scalar code, with the kernel's truncated comparison and
    /// its exact fallback.
    fn packed_leaf(p: &Packed, trees: &Trees, t: usize, row: &[f32]) -> f32 {
        let base = t << p.depth;
        let mut i = 0usize;
        let mut tie = false;
        for _ in 0..p.depth {
            let n = p.nodes[base + i];
            let x = f32_key(row[(n & FEATURE_MASK) as usize]) & !FEATURE_MASK;
            tie |= x == n & !FEATURE_MASK;
            i = 2 * i + 1 + (x > n) as usize;
        }
        if tie { exact_leaf(trees, t, row) } else { p.leaves[base + i - ((1 << p.depth) - 1)] }
    }

    #[test]
    fn packed_walks_reach_the_leaf_of_the_exact_walk() {
        let rows: Vec<f32> = (0..3000).map(|i| ((i * 7919) % 1009) as f32 / 37.0 - 9.0).collect();
        let data = Matrix::new(rows, 6, &[]).unwrap();
        let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
        for max_samples in [4, 64, 256] {
            let params =
                ForestParams { n_trees: 40, max_samples: Some(max_samples), seed: 3, ..Default::default() };
            let model = IsolationForest::fit(&data, names.clone(), &params).unwrap();
            let trees = &model.trees;
            let p = Packed::build(trees).unwrap();
            assert_eq!(p.groups, 3);
            for r in 0..data.n_rows() {
                let row = data.row(r);
                for t in 0..trees.n_trees() {
                    assert_eq!(packed_leaf(&p, trees, t, row), exact_leaf(trees, t, row), "tree {t} row {r}");
                }
            }
            // Values that tie with a threshold in the truncated key still take the exact path.
            let t = 0;
            let n = trees.nodes[trees.offsets[t] as usize];
            let mut row = data.row(0).to_vec();
            for v in [
                n.threshold,
                f32::from_bits(n.threshold.to_bits() + 1),
                f32::from_bits(n.threshold.to_bits() - 1),
            ] {
                row[n.feature as usize] = v;
                assert_eq!(packed_leaf(&p, trees, t, &row), exact_leaf(trees, t, &row));
            }
        }
    }

    #[test]
    fn forests_splitting_past_feature_32_are_not_packed() {
        // Only column 32 varies, so every split is on it.
        let rows: Vec<f32> =
            (0..50).flat_map(|i| (0..33).map(move |f| if f == 32 { i as f32 } else { 1.0 })).collect();
        let data = Matrix::new(rows, 33, &[]).unwrap();
        let names = (0..33).map(|i| format!("f{i}")).collect();
        let model =
            IsolationForest::fit(&data, names, &ForestParams { n_trees: 3, ..Default::default() }).unwrap();
        assert!(model.trees.nodes.iter().any(|n| n.feature == 32));
        assert!(Packed::build(&model.trees).is_none());
    }
}
