//! Path-length kernels: the hot loops of scoring.
//!
//! On CPUs with AVX-512 (checked at run time) rows without missing values are scored by
//! [`avx512`] over the [`Packed`] layout: one row walks 16 trees at once. Elsewhere, and for
//! forests the packed layout does not take, rows are scored in blocks of [`BLOCK`]: for each
//! tree, every row of the block takes one step per level in lock-step
//! (`idx = left + (x > threshold)`), which keeps many independent loads in flight and needs
//! no branch per node. Leaves loop onto themselves, so each tree costs exactly its depth in
//! steps. In a block that contains missing values, the rows that miss one are walked one by
//! one (eight trees in lock-step) by a walk that also reads each node's missing-value
//! direction; the block's other rows still take the fast kernels together.
//!
//! **Summation order.** Every kernel adds a row's path lengths in one canonical order: tree
//! `t` into lane `t % 16` of [`LaneSums`] (in tree order), then the 16 lanes pairwise by
//! [`reduce`]. So a row scores the same bits alone, in any batch, on any thread count and
//! with or without the vector kernel.

use crate::packed::{GROUP, Packed};
use crate::tree::{Trees, f32_key};

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Partial sums of a row's path lengths: tree `t` adds to lane `t % 16`.
pub(crate) type LaneSums = [f32; GROUP];

/// The lanes' total, halving pairwise (lane `i` + lane `i + 8`, then `+ 4`, `+ 2`, `+ 1`).
#[inline]
pub(crate) fn reduce(a: &LaneSums) -> f32 {
    let mut s = *a;
    let mut half = GROUP / 2;
    while half > 0 {
        for i in 0..half {
            s[i] += s[i + half];
        }
        half /= 2;
    }
    s[0]
}

/// The packed layout, when the vector kernel runs on this CPU for rows of `d` columns.
fn vector_kernel(trees: &Trees, d: usize) -> Option<&Packed> {
    #[cfg(target_arch = "x86_64")]
    if d <= crate::packed::MAX_FEATURES && avx512::available() {
        return trees.packed();
    }
    let _ = (trees, d);
    None
}

/// Rows walked together through a tree (scalar kernel) or a group of trees (vector kernel).
/// The vector kernel's pipeline starts and drains once per group and block, so longer blocks
/// pay that less often: on Zen 5, 256 rows scored 3–4 % faster than 128 and 4 % faster than
/// 64. The block's keys and lane sums (about 48 KiB at 256) live on the stack.
pub(crate) const BLOCK: usize = 256;
/// Below this many rows a block is walked row by row.
const FEW_ROWS: usize = 4;
/// Rows whose walks are interleaved in registers inside a block.
pub(crate) const LANES: usize = 16;

/// Whether any value of `v` is NaN. Unlike `iter().any`, which stops at the first hit and so
/// compiles to a value-by-value loop, this scans everything in wide vectors: a block of 64
/// rows took 7 % of the vector kernel's time in the short-circuiting form.
#[inline]
pub(crate) fn any_nan(v: &[f32]) -> bool {
    v.iter().fold(false, |seen, x| seen | x.is_nan())
}

/// Sets, for every row of `rows` (row-major, `d` columns, at most [`BLOCK`] rows), `out` to
/// the sum of its path lengths over all trees.
pub(crate) fn path_sums_block(trees: &Trees, rows: &[f32], d: usize, out: &mut [f32]) {
    debug_assert!(rows.len() / d <= BLOCK && out.len() == rows.len() / d);
    if any_nan(rows) {
        return path_sums_block_mixed(trees, rows, d, out);
    }
    path_sums_block_complete(trees, rows, d, out);
}

/// [`path_sums_block`] for rows without NaN: the vector kernel where it runs, else the
/// scalar block kernel.
fn path_sums_block_complete(trees: &Trees, rows: &[f32], d: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = vector_kernel(trees, d) {
        // SAFETY: `vector_kernel` checked AVX-512F and the width; `p` is `trees` packed.
        unsafe { avx512::path_sums(p, trees, rows, d, out) };
        return;
    }
    path_sums_block_scalar(trees, rows, d, out);
}

/// A block where some rows miss values: those take the NaN-aware walk one by one (its trees
/// in lock-step), the others the complete-row kernel together. Both add in the canonical
/// order, so the bits are those of any other path; a few missing values in a block of
/// fleet features no longer slow the whole block down.
fn path_sums_block_mixed(trees: &Trees, rows: &[f32], d: usize, out: &mut [f32]) {
    let mut complete = Vec::with_capacity(rows.len());
    let mut at = Vec::with_capacity(out.len());
    for (r, (row, o)) in rows.chunks(d).zip(out.iter_mut()).enumerate() {
        if row.iter().any(|v| v.is_nan()) {
            *o = path_sum_row_walk::<true>(trees, row);
        } else {
            complete.extend_from_slice(row);
            at.push(r);
        }
    }
    if at.is_empty() {
        return;
    }
    let mut sums = [0f32; BLOCK];
    path_sums_block_complete(trees, &complete, d, &mut sums[..at.len()]);
    for (&r, s) in at.iter().zip(sums) {
        out[r] = s;
    }
}

/// [`path_sums_block`] without the vector kernel (rows without NaN).
fn path_sums_block_scalar(trees: &Trees, rows: &[f32], d: usize, out: &mut [f32]) {
    let nb = rows.len() / d;
    if nb < FEW_ROWS {
        // Padding a handful of rows to a full lane group would multiply the work; walk them
        // one by one (same per-row summation order, so the same bits).
        for (row, o) in rows.chunks(d).zip(out.iter_mut()) {
            *o = path_sum_row_scalar(trees, row);
        }
        return;
    }
    // Feature-major copies of each group of LANES rows: lane r of feature f sits at
    // `f * LANES + r`, so all lanes address one buffer with constant offsets. A short last
    // group is padded with copies of its first row.
    let groups = nb.div_ceil(LANES);
    let mut cols = vec![0u32; groups * d * LANES];
    for (g, group_cols) in cols.chunks_mut(d * LANES).enumerate() {
        let first = g * LANES;
        let k = (nb - first).min(LANES);
        for r in 0..LANES {
            let row = first + if r < k { r } else { 0 };
            for (f, &v) in rows[row * d..(row + 1) * d].iter().enumerate() {
                group_cols[f * LANES + r] = f32_key(v);
            }
        }
    }
    let mut acc = [[[0f32; GROUP]; LANES]; BLOCK / LANES];
    // Tree-major: a tree's nodes stay in L1 while every group walks it.
    for t in 0..trees.n_trees() {
        for (group_cols, group_acc) in cols.chunks(d * LANES).zip(acc.iter_mut()) {
            walk_lanes(trees, t, group_cols, group_acc);
        }
    }
    for (o, a) in out.iter_mut().zip(acc.iter().flatten()) {
        *o = reduce(a);
    }
}

/// Walks [`LANES`] rows, given feature-major in `cols`, through tree `t` and adds their path
/// lengths to their lane sums in `acc`; the node indices stay in registers.
#[inline(always)]
fn walk_lanes(trees: &Trees, t: usize, cols: &[u32], acc: &mut [LaneSums; LANES]) {
    let col_ptr = cols.as_ptr();
    let range = trees.tree_range(t);
    let nodes = &trees.keyed[range.clone()];
    let values = &trees.values[range];
    let node_ptr = nodes.as_ptr() as *const u64;
    let mut idx = [0usize; LANES];
    for _ in 0..trees.depths[t] {
        for (r, i) in idx.iter_mut().enumerate() {
            // SAFETY: the model invariants (checked by the builder and by the loader) make
            // every child index of a node < nodes.len() and every feature < d, and `cols`
            // holds d × LANES keys (sized from the model's width); `offset` is feature ×
            // LANES. `KeyNode` is repr(C, align(8)): key in bits 0..32, offset in 32..48,
            // left in 48..64 of a little-endian u64.
            unsafe {
                // One 8-byte load per node instead of three narrow ones (volatile keeps LLVM
                // from splitting it): with 16 walks in flight, load ports bound this loop.
                let n = std::ptr::read_volatile(node_ptr.add(*i));
                let x = *col_ptr.add(((n >> 32) & 0xFFFF) as usize + r);
                *i = (n >> 48) as usize + (x > n as u32) as usize;
            }
        }
    }
    for (a, &i) in acc.iter_mut().zip(&idx) {
        a[t % GROUP] += values[i];
    }
}

/// Trees walked together for a single row: independent walks overlap their load latency.
const TREE_GROUP: usize = 8;

/// Sum of path lengths of one row over all trees, without heap allocation.
pub(crate) fn path_sum_row(trees: &Trees, row: &[f32]) -> f32 {
    if any_nan(row) {
        return path_sum_row_walk::<true>(trees, row);
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = vector_kernel(trees, row.len()) {
        let mut sum = [0f32];
        // SAFETY: `vector_kernel` checked AVX-512F and the width; `p` is `trees` packed.
        unsafe { avx512::path_sums(p, trees, row, row.len(), &mut sum) };
        return sum[0];
    }
    path_sum_row_scalar(trees, row)
}

/// [`path_sum_row`] without the vector kernel (a row without NaN).
fn path_sum_row_scalar(trees: &Trees, row: &[f32]) -> f32 {
    path_sum_row_walk::<false>(trees, row)
}

/// One row's path-length sum, [`TREE_GROUP`] trees walked in lock-step so that their loads
/// overlap. With `NAN`, missing values follow each node's `nan_right` (leaves hold `false`,
/// so they still loop onto themselves); without, the row must have no NaN.
fn path_sum_row_walk<const NAN: bool>(trees: &Trees, row: &[f32]) -> f32 {
    let n_trees = trees.n_trees();
    let mut sums = [0f32; GROUP];
    let mut t0 = 0;
    while t0 < n_trees {
        let g = TREE_GROUP.min(n_trees - t0);
        let mut base = [0usize; TREE_GROUP];
        let mut idx = [0usize; TREE_GROUP];
        let mut depth = 0u8;
        for k in 0..g {
            base[k] = trees.offsets[t0 + k] as usize;
            idx[k] = base[k];
            depth = depth.max(trees.depths[t0 + k]);
        }
        for _ in 0..depth {
            for k in 0..g {
                let n = trees.nodes[idx[k]];
                let x = row[n.feature as usize];
                // `&` and `|`, not `&&` and `||`: a branch on whether a value is missing
                // mispredicts often, and the extra load is cheap.
                let right = (x > n.threshold) | (NAN && x.is_nan() & trees.nan_right[idx[k]]);
                idx[k] = base[k] + (n.left + right as u16) as usize;
            }
        }
        for (k, &i) in idx[..g].iter().enumerate() {
            sums[(t0 + k) % GROUP] += trees.values[i];
        }
        t0 += g;
    }
    reduce(&sums)
}

/// Walks one row through every tree, calling `on_step(feature, parent, child)` for each
/// edge taken (global node indices); returns the path-length sum like [`path_sum_row`].
pub(crate) fn walk_row(trees: &Trees, row: &[f32], mut on_step: impl FnMut(usize, usize, usize)) -> f32 {
    let mut sums = [0f32; GROUP];
    for t in 0..trees.n_trees() {
        let base = trees.offsets[t] as usize;
        let mut i = base;
        loop {
            let n = trees.nodes[i];
            if n.left as usize + base == i {
                break;
            }
            let x = row[n.feature as usize];
            let right = x > n.threshold || (x.is_nan() && trees.nan_right[i]);
            let child = base + n.left as usize + right as usize;
            on_step(n.feature as usize, i, child);
            i = child;
        }
        sums[t % GROUP] += trees.values[i];
    }
    reduce(&sums)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::matrix::Matrix;
    use crate::{ForestParams, IsolationForest};

    /// Rows of `data` plus rows that sit on, just below and just above the thresholds of
    /// each tree's root, where a truncated comparison would tie.
    fn rows_with_ties(data: &Matrix, trees: &Trees) -> Vec<f32> {
        let mut rows = data.as_slice().to_vec();
        for t in 0..trees.n_trees() {
            let n = trees.nodes[trees.offsets[t] as usize];
            for v in [n.threshold, n.threshold.next_down(), n.threshold.next_up()] {
                let mut row = data.row(t % data.n_rows()).to_vec();
                row[n.feature as usize] = v;
                rows.extend(row);
            }
        }
        // Rows missing a value, scattered so that blocks mix them with complete rows.
        for r in (0..data.n_rows()).step_by(9) {
            let mut row = data.row(r).to_vec();
            row[r % data.n_cols()] = f32::NAN;
            rows.extend(row);
        }
        rows
    }

    fn sums(trees: &Trees, rows: &[f32], d: usize, vector: bool) -> Vec<f32> {
        let mut out = vec![0f32; rows.len() / d];
        for (block, o) in rows.chunks(BLOCK * d).zip(out.chunks_mut(BLOCK)) {
            if vector {
                path_sums_block(trees, block, d, o);
            } else {
                for (row, o) in block.chunks(d).zip(o.iter_mut()) {
                    if row.iter().any(|v| v.is_nan()) {
                        // The explanation walk: separate code with the same NaN rule.
                        *o = walk_row(trees, row, |_, _, _| {});
                    } else {
                        path_sums_block_scalar(trees, row, d, std::slice::from_mut(o));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn vector_kernel_gives_the_scalar_kernels_bits() {
        if !avx512::available() {
            eprintln!("this CPU has no AVX-512F: the vector kernel is not used here, nothing to compare");
            return;
        }
        let d = 25;
        let values: Vec<f32> =
            (0..700 * d).map(|i| (((i * 7919) % 2003) as f32 / 97.0 - 10.0) * 1.37).collect();
        let data = Matrix::new(values, d, &[]).unwrap();
        let names: Vec<String> = (0..d).map(|i| format!("f{i}")).collect();
        // Forests of depth 4 (no gathered level), 6, 8 (the kernel's own copy for the default
        // `max_samples`) and 10 (the deepest packed).
        for (max_samples, depth) in [(16, 4), (64, 6), (256, 8), (700, 10)] {
            let params =
                ForestParams { n_trees: 37, seed: 11, max_samples: Some(max_samples), ..Default::default() };
            let model = IsolationForest::fit(&data, names.clone(), &params).unwrap();
            assert_eq!(model.trees.packed().map(|p| p.depth), Some(depth), "max_samples {max_samples}");
            compare_kernels(&data, &model.trees, d);
        }
    }

    /// The vector kernel's sums against the scalar kernels', bit for bit, for `trees` as
    /// trained (snapped thresholds) and with every threshold moved one key up (as a model
    /// written before snapping, whose ties need the exact walk).
    fn compare_kernels(data: &Matrix, model_trees: &Trees, d: usize) {
        for snapped in [true, false] {
            let mut trees = model_trees.clone();
            if !snapped {
                // As a model written before snapping: thresholds one key past a snapped one.
                for n in trees.nodes.iter_mut() {
                    if n.threshold.is_finite() {
                        n.threshold = n.threshold.next_up();
                    }
                }
                trees.rebuild_derived();
            }
            let p = trees.packed().expect("a 25-feature forest of depth ≤ 10 is packed");
            assert_eq!(p.exact, snapped);
            let rows = rows_with_ties(data, &trees);
            let vector = sums(&trees, &rows, d, true);
            let scalar = sums(&trees, &rows, d, false);
            // The 16-row scalar block kernel, over the complete rows in full blocks, too.
            let complete: Vec<usize> =
                (0..scalar.len()).filter(|&r| rows[r * d..(r + 1) * d].iter().all(|v| !v.is_nan())).collect();
            for block in complete.chunks(BLOCK) {
                let block_rows: Vec<f32> =
                    block.iter().flat_map(|&r| rows[r * d..(r + 1) * d].iter().copied()).collect();
                let mut out = vec![0f32; block.len()];
                path_sums_block_scalar(&trees, &block_rows, d, &mut out);
                for (&r, o) in block.iter().zip(&out) {
                    assert_eq!(o.to_bits(), scalar[r].to_bits(), "row {r} in a scalar block");
                }
            }
            for (r, (v, s)) in vector.iter().zip(&scalar).enumerate() {
                assert_eq!(v.to_bits(), s.to_bits(), "row {r}, snapped {snapped}");
                // One row alone takes the single-row path, and must agree too.
                assert_eq!(
                    path_sum_row(&trees, &rows[r * d..(r + 1) * d]).to_bits(),
                    s.to_bits(),
                    "row {r} alone"
                );
            }
        }
    }
}
