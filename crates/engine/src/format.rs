//! The model file format, version 2 (version 1 is still read).
//!
//! ```text
//! header (24 bytes, little-endian)
//!   0  magic          b"ANOMALYD"
//!   8  format         u16   = 1
//!  10  kind           u16   = 1 (isolation forest)
//!  12  payload_len    u64
//!  20  crc32          u32   CRC-32 (IEEE) of the payload
//! payload
//!   writer           str   (u16 length + UTF-8) library that wrote the file
//!   params           n_trees u32, max_samples u32, features_per_tree u32, max_features f64,
//!                    contamination u8 (0 auto, 1 fraction) + f64, seed u64,
//!                    calibration_rows u32, max_depth u8,
//!                    random_stream u8 (0 anomalyd, 1 scikit-learn; from version 2 on;
//!                    a version-1 file is read as anomalyd, the only stream it could hold)
//!   features         count u32, then each name as str
//!   n_train u64, threshold f32
//!   feature stats    per feature p05 f32, p50 f32, p95 f32
//!   calibration      count u32, then ascending f32 anomaly scores
//!   trees            count u32, then per tree: node count u32 and the nodes in pre-order
//!                    (left subtree first). Internal node: u16 = feature | nan_right << 14,
//!                    then threshold f32. Leaf: u16 = 0x8000 | count, or 0xFFFF followed by
//!                    a u32 count when count ≥ 0x7FFF.
//! ```
//!
//! Leaf path lengths and internal-node counts are not stored: they follow from the leaf
//! depth and counts, and are recomputed on load exactly as at training. Loading validates
//! every field and never panics on any input.

use crate::calibrate::Calibration;
use crate::error::{EngineError, ModelFormatError};
use crate::explain::FeatureStats;
use crate::forest::IsolationForest;
use crate::params::{Contamination, MAX_FEATURES_LIMIT, MAX_SAMPLES_LIMIT, RandomStream, ValidParams};
use crate::tree::{TreeBuf, Trees};

/// First eight bytes of every anomalyd model file.
pub const MAGIC: &[u8; 8] = b"ANOMALYD";
/// Format version written by this build.
pub const FORMAT_VERSION: u16 = 2;
/// Oldest format version this build reads.
pub const MIN_FORMAT_VERSION: u16 = 1;
/// `kind` of an Isolation Forest file.
pub const KIND_FOREST: u16 = 1;
const HEADER_LEN: usize = 24;
const LEAF_FLAG: u16 = 0x8000;
const NAN_RIGHT_FLAG: u16 = 0x4000;
const WIDE_LEAF: u16 = 0xFFFF;

type FmtResult<T> = std::result::Result<T, ModelFormatError>;

fn invalid<T>(msg: impl Into<String>) -> FmtResult<T> {
    Err(ModelFormatError::Invalid(msg.into()))
}

/// Wraps a payload in the header.
pub fn wrap(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks the header and checksum; returns the kind and the payload.
pub fn unwrap(bytes: &[u8]) -> FmtResult<(u16, &[u8])> {
    unwrap_versioned(bytes).map(|(_, kind, payload)| (kind, payload))
}

/// [`unwrap`], also returning the file's format version.
pub fn unwrap_versioned(bytes: &[u8]) -> FmtResult<(u16, u16, &[u8])> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(ModelFormatError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(ModelFormatError::Truncated { expected: HEADER_LEN as u64, found: bytes.len() as u64 });
    }
    let mut r = Reader::new(&bytes[MAGIC.len()..HEADER_LEN]);
    let version = r.u16()?;
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(ModelFormatError::UnsupportedVersion {
            found: version,
            min: MIN_FORMAT_VERSION,
            max: FORMAT_VERSION,
        });
    }
    let kind = r.u16()?;
    let len = r.u64()?;
    let stored = r.u32()?;
    let available = (bytes.len() - HEADER_LEN) as u64;
    if available < len {
        // `len` is untrusted and may be near u64::MAX: saturate rather than overflow
        // (a panic with overflow checks on, a wrong size in the message without).
        let expected = (HEADER_LEN as u64).saturating_add(len);
        return Err(ModelFormatError::Truncated { expected, found: bytes.len() as u64 });
    }
    if available > len {
        return invalid(format!("{} unexpected bytes after the payload", available - len));
    }
    let payload = &bytes[HEADER_LEN..];
    let found = crc32fast::hash(payload);
    if found != stored {
        return Err(ModelFormatError::Checksum { stored, found });
    }
    Ok((version, kind, payload))
}

/// Bounds-checked little-endian reader over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> FmtResult<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return invalid(format!("payload ends early at byte {} (needed {n} more)", self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> FmtResult<&'a [u8]> {
        self.take(n)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// One byte.
    pub fn u8(&mut self) -> FmtResult<u8> {
        Ok(self.take(1)?[0])
    }
    /// Little-endian u16.
    pub fn u16(&mut self) -> FmtResult<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    /// Little-endian u32.
    pub fn u32(&mut self) -> FmtResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    /// Little-endian u64.
    pub fn u64(&mut self) -> FmtResult<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// Little-endian f32.
    pub fn f32(&mut self) -> FmtResult<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    /// Little-endian f64.
    pub fn f64(&mut self) -> FmtResult<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// u16-length-prefixed UTF-8 string.
    pub fn str(&mut self) -> FmtResult<String> {
        let n = self.u16()? as usize;
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => invalid(format!("string at byte {} is not UTF-8", self.pos - n)),
        }
    }
    /// A count that is followed by at least `min_item_bytes` per item; guards allocations.
    pub fn count(&mut self, what: &str, min_item_bytes: usize) -> FmtResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes) > self.remaining() {
            return invalid(format!("{what} count {n} exceeds the remaining {} bytes", self.remaining()));
        }
        Ok(n)
    }
}

/// Little-endian writer.
#[derive(Default)]
pub struct Writer {
    /// Bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// f32.
    pub fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// f64.
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// u16-length-prefixed string; longer strings are cut at a character boundary.
    pub fn str(&mut self, s: &str) {
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.buf.extend_from_slice(&s.as_bytes()[..end]);
    }
}

impl IsolationForest {
    /// Serialises the model (format version [`FORMAT_VERSION`]). The same model always gives
    /// the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.str(concat!("anomalyd-engine ", env!("CARGO_PKG_VERSION")));
        let p = &self.params;
        w.u32(p.n_trees as u32);
        w.u32(p.max_samples as u32);
        w.u32(p.features_per_tree as u32);
        w.f64(p.max_features);
        match p.contamination {
            Contamination::Auto => {
                w.u8(0);
                w.f64(0.0);
            }
            Contamination::Fraction(c) => {
                w.u8(1);
                w.f64(c);
            }
        }
        w.u64(p.seed);
        w.u32(p.calibration_rows as u32);
        w.u8(p.max_depth as u8);
        w.u8(match p.random_stream {
            RandomStream::Anomalyd => 0,
            RandomStream::ScikitLearn => 1,
        });
        w.u32(self.feature_names.len() as u32);
        for name in &self.feature_names {
            w.str(name);
        }
        w.u64(self.calibration.n_train);
        w.f32(self.threshold);
        for s in &self.feature_stats {
            w.f32(s.p05);
            w.f32(s.p50);
            w.f32(s.p95);
        }
        w.u32(self.calibration.sorted_scores.len() as u32);
        for &s in &self.calibration.sorted_scores {
            w.f32(s);
        }
        w.u32(self.trees.n_trees() as u32);
        for t in 0..self.trees.n_trees() {
            encode_tree(&self.trees, t, &mut w);
        }
        wrap(KIND_FOREST, &w.buf)
    }

    /// Loads a model written by any supported format version. Every field is validated;
    /// a truncated, corrupt or foreign file gives an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EngineError> {
        let (version, kind, payload) = unwrap_versioned(bytes)?;
        if kind != KIND_FOREST {
            return Err(ModelFormatError::Invalid(format!(
                "file holds kind {kind}, not an isolation forest (kind {KIND_FOREST})"
            ))
            .into());
        }
        Ok(decode_forest(&mut Reader::new(payload), version)?)
    }
}

fn encode_tree(trees: &Trees, t: usize, w: &mut Writer) {
    let range = trees.tree_range(t);
    let base = range.start;
    w.u32(range.len() as u32);
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        let n = trees.nodes[base + i];
        if n.left as usize == i {
            let count = trees.counts[base + i];
            if count < 0x7FFF {
                w.u16(LEAF_FLAG | count as u16);
            } else {
                w.u16(WIDE_LEAF);
                w.u32(count);
            }
        } else {
            let flag = if trees.nan_right[base + i] { NAN_RIGHT_FLAG } else { 0 };
            w.u16(n.feature | flag);
            w.f32(n.threshold);
            stack.push(n.left as usize + 1);
            stack.push(n.left as usize);
        }
    }
}

fn decode_tree(r: &mut Reader, p: &ValidParams, n_features: usize) -> FmtResult<TreeBuf> {
    let declared = r.count("node", 2)?;
    let max_nodes = 2 * p.max_samples - 1;
    if declared == 0 || declared > max_nodes {
        return invalid(format!(
            "tree has {declared} nodes; a tree of {} samples has 1..={max_nodes}",
            p.max_samples
        ));
    }
    let mut tree = TreeBuf::with_root();
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, depth)) = stack.pop() {
        let tag = r.u16()?;
        if tag & LEAF_FLAG != 0 {
            let count = if tag == WIDE_LEAF { r.u32()? as usize } else { (tag & !LEAF_FLAG) as usize };
            if count == 0 || count > p.max_samples {
                return invalid(format!("leaf holds {count} rows; expected 1..={}", p.max_samples));
            }
            tree.set_leaf(i, depth, count);
        } else {
            let feature = tag & !NAN_RIGHT_FLAG;
            if feature as usize >= n_features {
                return invalid(format!("split on feature {feature}, but the model has {n_features}"));
            }
            let threshold = r.f32()?;
            if !threshold.is_finite() {
                return invalid(format!("split threshold {threshold} is not finite"));
            }
            if depth >= p.max_depth {
                return invalid(format!("tree is deeper than its limit {}", p.max_depth));
            }
            if tree.nodes.len() + 2 > declared {
                return invalid(format!("tree has more nodes than the declared {declared}"));
            }
            let left = tree.alloc_pair();
            tree.set_split(i, feature, threshold, tag & NAN_RIGHT_FLAG != 0, left);
            stack.push((left + 1, depth + 1));
            stack.push((left, depth + 1));
        }
    }
    if tree.nodes.len() != declared {
        return invalid(format!("tree declares {declared} nodes but holds {}", tree.nodes.len()));
    }
    tree.sum_counts();
    if tree.counts[0] as usize != p.max_samples {
        return invalid(format!("tree leaves hold {} rows, expected {}", tree.counts[0], p.max_samples));
    }
    Ok(tree)
}

fn decode_forest(r: &mut Reader, version: u16) -> FmtResult<IsolationForest> {
    let _writer = r.str()?;
    let n_trees = r.u32()? as usize;
    let max_samples = r.u32()? as usize;
    let features_per_tree = r.u32()? as usize;
    let max_features = r.f64()?;
    let contamination = match (r.u8()?, r.f64()?) {
        (0, _) => Contamination::Auto,
        (1, c) if c > 0.0 && c <= 0.5 => Contamination::Fraction(c),
        (tag, c) => return invalid(format!("bad contamination ({tag}, {c})")),
    };
    let seed = r.u64()?;
    let calibration_rows = r.u32()? as usize;
    let max_depth = r.u8()? as usize;
    let random_stream = match version {
        1 => RandomStream::Anomalyd,
        _ => match r.u8()? {
            0 => RandomStream::Anomalyd,
            1 => RandomStream::ScikitLearn,
            tag => return invalid(format!("unknown random stream {tag}")),
        },
    };
    if !(1..=100_000).contains(&n_trees) {
        return invalid(format!("n_trees {n_trees} out of range"));
    }
    if !(2..=MAX_SAMPLES_LIMIT).contains(&max_samples) {
        return invalid(format!("max_samples {max_samples} out of range"));
    }
    if max_depth != (max_samples.max(2) as f64).log2().ceil() as usize {
        return invalid(format!("max_depth {max_depth} does not match max_samples {max_samples}"));
    }
    if !(max_features > 0.0 && max_features <= 1.0) {
        return invalid(format!("max_features {max_features} out of range"));
    }
    let n_features = r.count("feature", 2)?;
    if !(1..=MAX_FEATURES_LIMIT).contains(&n_features) || !(1..=n_features).contains(&features_per_tree) {
        return invalid(format!("{n_features} features with {features_per_tree} per tree is out of range"));
    }
    let feature_names = (0..n_features).map(|_| r.str()).collect::<FmtResult<Vec<_>>>()?;
    let n_train = r.u64()?;
    let threshold = r.f32()?;
    if !(threshold.is_finite() && n_train >= max_samples as u64) {
        return invalid(format!("threshold {threshold} or training size {n_train} is invalid"));
    }
    let mut feature_stats = Vec::with_capacity(n_features);
    for _ in 0..n_features {
        let s = FeatureStats { p05: r.f32()?, p50: r.f32()?, p95: r.f32()? };
        if [s.p05, s.p50, s.p95].iter().any(|v| v.is_infinite()) {
            return invalid("feature statistics hold an infinite value");
        }
        feature_stats.push(s);
    }
    let n_cal = r.count("calibration score", 4)?;
    let sorted_scores = (0..n_cal).map(|_| r.f32()).collect::<FmtResult<Vec<_>>>()?;
    if sorted_scores.iter().any(|s| !s.is_finite()) || !sorted_scores.is_sorted() {
        return invalid("calibration scores are not finite and ascending");
    }
    let params = ValidParams {
        n_trees,
        max_samples,
        features_per_tree,
        max_features,
        contamination,
        seed,
        calibration_rows,
        max_depth,
        random_stream,
    };
    if r.count("tree", 6)? != n_trees {
        return invalid("tree count does not match n_trees");
    }
    let mut trees = Trees::default();
    for _ in 0..n_trees {
        trees.push(&decode_tree(r, &params, n_features)?);
    }
    if r.remaining() != 0 {
        return invalid(format!("{} bytes left after the last tree", r.remaining()));
    }
    // Laid out for the vector kernel now, so the first scoring call does not pay for it.
    trees.packed();
    Ok(IsolationForest {
        params,
        feature_names,
        trees,
        feature_stats,
        calibration: Calibration { sorted_scores, n_train, psi: max_samples },
        threshold,
    })
}
