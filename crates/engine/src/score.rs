//! Path-length kernels: the hot loops of scoring.
//!
//! Rows are scored in blocks of [`BLOCK`]: for each tree, every row of the block takes one
//! step per level in lock-step (`idx = left + (x > threshold)`), which keeps many
//! independent loads in flight and needs no branch per node. Leaves loop onto themselves,
//! so each tree costs exactly its depth in steps. A block that contains a missing value
//! takes the slower kernel that also reads each node's missing-value direction.

use crate::tree::{Trees, f32_key};

/// Rows walked together through a tree.
pub(crate) const BLOCK: usize = 64;
/// Below this many rows a block is walked row by row.
const FEW_ROWS: usize = 4;
/// Rows whose walks are interleaved in registers inside a block.
pub(crate) const LANES: usize = 16;

/// Adds, for every row of `rows` (row-major, `d` columns, at most [`BLOCK`] rows), the sum of
/// its path lengths over all trees to `out`.
pub(crate) fn path_sums_block(trees: &Trees, rows: &[f32], d: usize, out: &mut [f32]) {
    let nb = rows.len() / d;
    debug_assert!(nb <= BLOCK && out.len() == nb);
    if rows.iter().any(|v| v.is_nan()) {
        return path_sums_block_nan(trees, rows, d, out);
    }
    if nb < FEW_ROWS {
        // Padding a handful of rows to a full lane group would multiply the work; walk them
        // one by one (same per-row summation order, so the same bits).
        for (row, o) in rows.chunks(d).zip(out.iter_mut()) {
            *o = path_sum_row(trees, row);
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
    let mut acc = [[0f32; LANES]; BLOCK / LANES];
    // Tree-major: a tree's nodes stay in L1 while every group walks it.
    for t in 0..trees.n_trees() {
        for (group_cols, group_acc) in cols.chunks(d * LANES).zip(acc.iter_mut()) {
            walk_lanes(trees, t, group_cols, group_acc);
        }
    }
    for (o, a) in out.iter_mut().zip(acc.iter().flatten()) {
        *o = *a;
    }
}

/// Walks [`LANES`] rows, given feature-major in `cols`, through tree `t` and adds their path
/// lengths to `acc`; the node indices stay in registers.
#[inline(always)]
fn walk_lanes(trees: &Trees, t: usize, cols: &[u32], acc: &mut [f32; LANES]) {
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
        *a += values[i];
    }
}

fn path_sums_block_nan(trees: &Trees, rows: &[f32], d: usize, out: &mut [f32]) {
    let nb = rows.len() / d;
    let mut acc = [0f32; BLOCK];
    for t in 0..trees.n_trees() {
        let range = trees.tree_range(t);
        let nodes = &trees.nodes[range.clone()];
        let nan_right = &trees.nan_right[range.clone()];
        let values = &trees.values[range];
        let mut idx = [0u16; BLOCK];
        for _ in 0..trees.depths[t] {
            for r in 0..nb {
                let i = idx[r] as usize;
                let n = nodes[i];
                let x = rows[r * d + n.feature as usize];
                let right = x > n.threshold || (x.is_nan() && nan_right[i]);
                idx[r] = n.left + right as u16;
            }
        }
        for r in 0..nb {
            acc[r] += values[idx[r] as usize];
        }
    }
    out.copy_from_slice(&acc[..nb]);
}

/// Trees walked together for a single row: independent walks overlap their load latency.
const TREE_GROUP: usize = 8;

/// Sum of path lengths of one row over all trees, without heap allocation.
pub(crate) fn path_sum_row(trees: &Trees, row: &[f32]) -> f32 {
    if row.iter().any(|v| v.is_nan()) {
        let mut out = [0f32];
        path_sums_block_nan(trees, row, row.len(), &mut out);
        return out[0];
    }
    let n_trees = trees.n_trees();
    let mut sum = 0f32;
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
                idx[k] = base[k] + (n.left + (x > n.threshold) as u16) as usize;
            }
        }
        for &i in &idx[..g] {
            sum += trees.values[i];
        }
        t0 += g;
    }
    sum
}

/// Walks one row through every tree, calling `on_step(feature, parent, child)` for each
/// edge taken (global node indices); returns the path-length sum like [`path_sum_row`].
pub(crate) fn walk_row(trees: &Trees, row: &[f32], mut on_step: impl FnMut(usize, usize, usize)) -> f32 {
    let mut sum = 0f32;
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
        sum += trees.values[i];
    }
    sum
}
