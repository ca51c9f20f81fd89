//! The AVX-512 path-length kernel over the [`Packed`] layout.
//!
//! One vector holds one row's walk through 16 trees at once (a lane per tree). The row's
//! keys sit in two registers, so fetching `x[feature]` for 16 different features is one
//! two-register permute (which reads only the low five bits of each node word: the feature)
//! instead of 16 loads. The four top levels are selected from registers with blends; the
//! deeper levels and the leaf are gathered. Several walks run interleaved so that their
//! gathers overlap. A block of rows goes through one group of trees at a time in batches of
//! four rows, software-pipelined: one batch walks its top levels while the batch before it
//! waits on its gathers ([`group_pipelined`]). One row walks eight groups at once ("units").
//! Why not one lane per row: then every lane would need a different row's value, which is
//! another gather per step.
//!
//! Lane sums follow the crate's canonical order (tree `t` adds to lane `t % 16`, in tree
//! order), so every kernel gives the same bits.

use std::arch::x86_64::*;

use super::{BLOCK, LaneSums, reduce};
use crate::packed::{FEATURE_MASK, GROUP, MAX_FEATURES, Packed, TOP_LEVELS, TOP_NODES, exact_leaf};
use crate::tree::{Trees, f32_key};

/// Groups one row walks at once.
const UNITS: usize = 8;
/// Rows per batch of the software-pipelined block walk ([`group_pipelined`]): with 4, two
/// batches' row keys and walk state fit the 32 vector registers; 2 was 40 % slower on Zen 5,
/// and 8 (which spills) no faster than the walk without pipelining.
const PIPE_UNITS: usize = 4;

/// A row's keys with the low bits cleared, as the kernel compares them, padded to 32 columns.
type RowKeys = [u32; MAX_FEATURES];

/// Whether this CPU runs the kernel (the check is cached by the standard library).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

fn row_keys(row: &[f32]) -> RowKeys {
    let mut k = [0u32; MAX_FEATURES];
    for (kf, &v) in k.iter_mut().zip(row) {
        *kf = f32_key(v) & !FEATURE_MASK;
    }
    k
}

/// Sum of path lengths over all trees of every row of `rows` (row-major, `d ≤ 32` columns, at
/// most [`BLOCK`] rows, no NaN), into `out`: lane sums reduced by [`reduce`], the canonical
/// order.
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]), and `p` must be `trees` laid out by
/// [`Packed::build`].
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn path_sums(p: &Packed, trees: &Trees, rows: &[f32], d: usize, out: &mut [f32]) {
    let nb = rows.len() / d;
    assert!(d <= MAX_FEATURES && nb <= BLOCK && out.len() == nb);
    if nb == 1 {
        // SAFETY: the caller's guarantees.
        out[0] = reduce(&unsafe { row_lane_sums(p, trees, rows) });
        return;
    }
    // Rows past `nb` repeat row 0 to fill the last batch.
    let padded = nb.next_multiple_of(PIPE_UNITS);
    let mut keys = [[0u32; MAX_FEATURES]; BLOCK];
    for (r, k) in keys.iter_mut().enumerate().take(padded) {
        let src = if r < nb { r } else { 0 };
        *k = row_keys(&rows[src * d..(src + 1) * d]);
    }
    let mut acc = [_mm512_setzero_ps(); BLOCK];
    let k = &keys[..padded];
    for g in 0..p.groups {
        // Depth 8 (`max_samples` 129..=256, the default) gets its own copy with a fixed
        // number of gathered levels, so that the pipeline's loop unrolls into one block.
        match (p.exact, p.depth) {
            (true, 8) => group_pipelined::<false, 4>(p, trees, g, k, rows, d, &mut acc),
            (false, 8) => group_pipelined::<true, 4>(p, trees, g, k, rows, d, &mut acc),
            (true, _) => group_pipelined::<false, 0>(p, trees, g, k, rows, d, &mut acc),
            (false, _) => group_pipelined::<true, 0>(p, trees, g, k, rows, d, &mut acc),
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        let mut lanes = [0f32; GROUP];
        // SAFETY: `lanes` is 16 f32s.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *a) };
        *o = reduce(&lanes);
    }
}

/// Walks the rows whose keys are `keys` (a multiple of [`PIPE_UNITS`] rows; those past the
/// rows of `rows` are padding) through group `g` and adds their leaves to `acc`. `DEEP` is
/// the number of gathered levels (`depth − 4`), or 0 to read it from `p`.
///
/// The top levels are register work and the deeper levels wait on gathers. Walked one after
/// the other, they hardly overlapped (the out-of-order window does not reach from one phase
/// into the next), so they are software-pipelined: while one batch of [`PIPE_UNITS`] rows
/// waits on its gathers, the next batch walks its top levels. On Zen 5 this took 8–10 % off
/// the kernel; the gathers (about one element per cycle) are now nearly all of its time.
#[inline]
#[target_feature(enable = "avx512f")]
fn group_pipelined<const TIES: bool, const DEEP: usize>(
    p: &Packed,
    trees: &Trees,
    g: usize,
    keys: &[RowKeys],
    rows: &[f32],
    d: usize,
    acc: &mut [__m512],
) {
    const PU: usize = PIPE_UNITS;
    let nb = rows.len() / d;
    let group = Group::new(p, g);
    let t = &group.top;
    let depth = p.depth;
    let deep = if DEEP > 0 { DEEP } else { (depth - TOP_LEVELS) as usize };
    let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let lane_base = _mm512_sllv_epi32(lanes, _mm512_set1_epi32(depth as i32));
    let leaf_base = _mm512_sub_epi32(lane_base, _mm512_set1_epi32((1 << depth) - 1));
    let one = _mm512_set1_epi32(1);
    let high = _mm512_set1_epi32(!FEATURE_MASK as i32);
    // SAFETY: RowKeys is 32 u32s, two 64-byte vectors.
    let load = |r: usize| unsafe {
        (_mm512_loadu_si512(keys[r].as_ptr().cast()), _mm512_loadu_si512(keys[r].as_ptr().add(16).cast()))
    };
    let step = |(lo, hi): (__m512i, __m512i), n: __m512i, tie: &mut u16| {
        let x = _mm512_permutex2var_epi32(lo, n, hi);
        if TIES {
            *tie |= _mm512_cmpeq_epi32_mask(x, _mm512_and_si512(n, high));
        }
        _mm512_cmpgt_epu32_mask(x, n)
    };
    // Top level `s` of a walk whose turns so far are the bits of `j` (its index in level s,
    // the root's turn highest); `j` becomes the index in level s + 1.
    let top_level = |s: usize, key: (__m512i, __m512i), j: &mut __m512i, tie: &mut u16| {
        let b0 = _mm512_test_epi32_mask(*j, one);
        let n = match s {
            0 => t[0],
            1 => _mm512_mask_blend_epi32(b0, t[1], t[2]),
            2 => {
                let b1 = _mm512_test_epi32_mask(*j, _mm512_set1_epi32(2));
                let a = _mm512_mask_blend_epi32(b0, t[3], t[4]);
                let b = _mm512_mask_blend_epi32(b0, t[5], t[6]);
                _mm512_mask_blend_epi32(b1, a, b)
            }
            _ => {
                let b1 = _mm512_test_epi32_mask(*j, _mm512_set1_epi32(2));
                let b2 = _mm512_test_epi32_mask(*j, _mm512_set1_epi32(4));
                let c0 = _mm512_mask_blend_epi32(b0, t[7], t[8]);
                let c1 = _mm512_mask_blend_epi32(b0, t[9], t[10]);
                let c2 = _mm512_mask_blend_epi32(b0, t[11], t[12]);
                let c3 = _mm512_mask_blend_epi32(b0, t[13], t[14]);
                let d0 = _mm512_mask_blend_epi32(b1, c0, c1);
                let d1 = _mm512_mask_blend_epi32(b1, c2, c3);
                _mm512_mask_blend_epi32(b2, d0, d1)
            }
        };
        let right = step(key, n, tie);
        let twice = _mm512_add_epi32(*j, *j);
        *j = _mm512_mask_add_epi32(twice, right, twice, one);
    };
    let batches = keys.len() / PU;
    let mut next = [_mm512_setzero_si512(); PU];
    let mut next_ties = [0u16; PU];
    for s in 0..TOP_LEVELS as usize {
        for k in 0..PU {
            top_level(s, load(k), &mut next[k], &mut next_ties[k]);
        }
    }
    for b in 0..batches {
        let r0 = b * PU;
        let mut idx = [_mm512_setzero_si512(); PU];
        for k in 0..PU {
            idx[k] = _mm512_add_epi32(next[k], _mm512_set1_epi32(TOP_NODES as i32));
        }
        let mut ties = next_ties;
        // The last batch walks its own top levels again, and the result is dropped.
        let r1 = if b + 1 < batches { r0 + PU } else { r0 };
        next = [_mm512_setzero_si512(); PU];
        next_ties = [0u16; PU];
        for s in 0..deep.max(TOP_LEVELS as usize) {
            if s < deep {
                for k in 0..PU {
                    // SAFETY: a lane's base plus a heap index < 2^depth stays inside the group.
                    let n = unsafe {
                        _mm512_i32gather_epi32::<4>(_mm512_add_epi32(idx[k], lane_base), group.nodes)
                    };
                    let right = step(load(r0 + k), n, &mut ties[k]);
                    let left = _mm512_add_epi32(_mm512_add_epi32(idx[k], idx[k]), one);
                    idx[k] = _mm512_mask_add_epi32(left, right, left, one);
                }
            }
            if s < TOP_LEVELS as usize {
                for k in 0..PU {
                    top_level(s, load(r1 + k), &mut next[k], &mut next_ties[k]);
                }
            }
        }
        for k in 0..PU {
            // SAFETY: after `depth` steps a heap index lies in [2^depth − 1, 2^(depth+1) − 1):
            // a leaf offset below 2^depth plus the lane's base.
            let mut v =
                unsafe { _mm512_i32gather_ps::<4>(_mm512_add_epi32(idx[k], leaf_base), group.leaves) };
            let r = r0 + k;
            if ties[k] != 0 && r < nb {
                v = exact_lanes(trees, g, ties[k], &rows[r * d..(r + 1) * d], v);
            }
            acc[r] = _mm512_add_ps(acc[r], v);
        }
    }
}

/// Lane sums of one row: groups of trees walked [`UNITS`] at once, the last few in a smaller
/// batch so that no walk is wasted on padding.
///
/// # Safety
/// As for [`path_sums`].
#[target_feature(enable = "avx512f")]
unsafe fn row_lane_sums(p: &Packed, trees: &Trees, row: &[f32]) -> LaneSums {
    let keys = row_keys(row);
    let mut acc = _mm512_setzero_ps();
    let mut g0 = 0;
    while g0 < p.groups {
        // Groups are added in order, as the canonical summation asks.
        g0 += match p.groups - g0 {
            UNITS.. => row_batch::<UNITS>(p, trees, &keys, row, g0, &mut acc),
            4.. => row_batch::<4>(p, trees, &keys, row, g0, &mut acc),
            2.. => row_batch::<2>(p, trees, &keys, row, g0, &mut acc),
            _ => row_batch::<1>(p, trees, &keys, row, g0, &mut acc),
        };
    }
    let mut out = [0f32; GROUP];
    // SAFETY: `out` is 16 f32s.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

/// Walks `row` through groups `g0..g0 + U` and adds their leaves to `acc`; returns `U`.
#[target_feature(enable = "avx512f")]
fn row_batch<const U: usize>(
    p: &Packed,
    trees: &Trees,
    keys: &RowKeys,
    row: &[f32],
    g0: usize,
    acc: &mut __m512,
) -> usize {
    let groups: [Group; U] = std::array::from_fn(|k| Group::new(p, g0 + k));
    let (leaves, ties) =
        if p.exact { walk::<false, U>(p, &groups, keys) } else { walk::<true, U>(p, &groups, keys) };
    for (k, (mut v, tie)) in leaves.into_iter().zip(ties).enumerate() {
        if tie != 0 {
            v = exact_lanes(trees, g0 + k, tie, row, v);
        }
        *acc = _mm512_add_ps(*acc, v);
    }
    U
}

/// One group of trees: its top levels in registers and where its deeper levels live.
struct Group {
    top: [__m512i; TOP_NODES],
    nodes: *const i32,
    leaves: *const f32,
}

impl Group {
    #[target_feature(enable = "avx512f")]
    fn new(p: &Packed, g: usize) -> Group {
        // SAFETY: `top` holds TOP_NODES × GROUP words per group, and `nodes` and `leaves`
        // GROUP << depth entries per group; g < p.groups.
        unsafe {
            Group {
                top: std::array::from_fn(|i| {
                    _mm512_loadu_si512(p.top.as_ptr().add((g * TOP_NODES + i) * GROUP).cast())
                }),
                nodes: p.nodes.as_ptr().add((g * GROUP) << p.depth).cast(),
                leaves: p.leaves.as_ptr().add((g * GROUP) << p.depth),
            }
        }
    }
}

/// Walks one row (its `keys`) through each of `groups` to their leaves: their path lengths
/// and, with `TIES`, the lanes where a value's truncated key tied with a threshold's (those
/// lanes must be walked again exactly). Without `TIES` the forest's thresholds are all
/// snapped, and the truncated comparison is exact.
#[inline]
#[target_feature(enable = "avx512f")]
fn walk<const TIES: bool, const U: usize>(
    p: &Packed,
    groups: &[Group; U],
    keys: &RowKeys,
) -> ([__m512; U], [u16; U]) {
    let depth = p.depth;
    let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let lane_base = _mm512_sllv_epi32(lanes, _mm512_set1_epi32(depth as i32));
    let leaf_base = _mm512_sub_epi32(lane_base, _mm512_set1_epi32((1 << depth) - 1));
    let one = _mm512_set1_epi32(1);
    let high = _mm512_set1_epi32(!FEATURE_MASK as i32);
    // SAFETY: RowKeys is 32 u32s, two 64-byte vectors.
    let (lo, hi) = unsafe {
        (_mm512_loadu_si512(keys.as_ptr().cast()), _mm512_loadu_si512(keys.as_ptr().add(16).cast()))
    };
    let mut ties = [0u16; U];
    // One step at node words `n`: the lanes going right (and, with TIES, ties noted).
    let step = |k: usize, n: __m512i, ties: &mut [u16; U]| {
        let x = _mm512_permutex2var_epi32(lo, n, hi);
        if TIES {
            ties[k] |= _mm512_cmpeq_epi32_mask(x, _mm512_and_si512(n, high));
        }
        // `x` has zero low bits, so x > n exactly when x's high bits exceed n's.
        _mm512_cmpgt_epu32_mask(x, n)
    };
    let mut idx = [_mm512_setzero_si512(); U];
    for k in 0..U {
        // The blend tree of `group_pipelined`'s top levels, written out again: one helper for
        // both made the pipelined kernel 5 % slower (0.379 → 0.401 µs per row on Zen 5).
        let t = &groups[k].top;
        let g0 = step(k, t[0], &mut ties);
        let g1 = step(k, _mm512_mask_blend_epi32(g0, t[1], t[2]), &mut ties);
        let a = _mm512_mask_blend_epi32(g1, t[3], t[4]);
        let b = _mm512_mask_blend_epi32(g1, t[5], t[6]);
        let g2 = step(k, _mm512_mask_blend_epi32(g0, a, b), &mut ties);
        let c0 = _mm512_mask_blend_epi32(g2, t[7], t[8]);
        let c1 = _mm512_mask_blend_epi32(g2, t[9], t[10]);
        let c2 = _mm512_mask_blend_epi32(g2, t[11], t[12]);
        let c3 = _mm512_mask_blend_epi32(g2, t[13], t[14]);
        let d0 = _mm512_mask_blend_epi32(g1, c0, c1);
        let d1 = _mm512_mask_blend_epi32(g1, c2, c3);
        let g3 = step(k, _mm512_mask_blend_epi32(g0, d0, d1), &mut ties);
        // Heap index at level 4: 15 + the four turns as bits, the root's turn highest.
        let mut i = _mm512_set1_epi32(TOP_NODES as i32);
        i = _mm512_mask_add_epi32(i, g0, i, _mm512_set1_epi32(8));
        i = _mm512_mask_add_epi32(i, g1, i, _mm512_set1_epi32(4));
        i = _mm512_mask_add_epi32(i, g2, i, _mm512_set1_epi32(2));
        idx[k] = _mm512_mask_add_epi32(i, g3, i, one);
    }
    for _ in TOP_LEVELS..depth {
        for k in 0..U {
            // SAFETY: a lane's base plus a heap index < 2^depth stays inside its group.
            let n =
                unsafe { _mm512_i32gather_epi32::<4>(_mm512_add_epi32(idx[k], lane_base), groups[k].nodes) };
            let right = step(k, n, &mut ties);
            let left = _mm512_add_epi32(_mm512_add_epi32(idx[k], idx[k]), one);
            idx[k] = _mm512_mask_add_epi32(left, right, left, one);
        }
    }
    let mut leaves = [_mm512_setzero_ps(); U];
    for k in 0..U {
        // SAFETY: after `depth` steps a heap index lies in [2^depth − 1, 2^(depth+1) − 1): a
        // leaf offset below 2^depth plus the lane's base.
        leaves[k] =
            unsafe { _mm512_i32gather_ps::<4>(_mm512_add_epi32(idx[k], leaf_base), groups[k].leaves) };
    }
    (leaves, ties)
}

/// `v` with the lanes in `ties` (trees of group `g`) replaced by exact walks of `row`.
#[cold]
#[target_feature(enable = "avx512f")]
fn exact_lanes(trees: &Trees, g: usize, ties: u16, row: &[f32], v: __m512) -> __m512 {
    let mut vals = [0f32; GROUP];
    // SAFETY: `vals` is 16 f32s.
    unsafe { _mm512_storeu_ps(vals.as_mut_ptr(), v) };
    for (lane, val) in vals.iter_mut().enumerate() {
        let t = g * GROUP + lane;
        if ties & (1 << lane) != 0 && t < trees.n_trees() {
            *val = exact_leaf(trees, t, row);
        }
    }
    // SAFETY: as above.
    unsafe { _mm512_loadu_ps(vals.as_ptr()) }
}
