//! Fuzz target: the model loader (`IsolationForest::from_bytes`) on untrusted bytes.
//!
//! The loader promises to never panic, whatever the input, and a model it accepts must be
//! usable: the scoring kernels stay in bounds (the batch kernel indexes without bounds
//! checks, trusting the invariants the loader validates; cargo-fuzz's AddressSanitizer
//! catches any slip), single-row and batch scoring agree, explaining works, and the model
//! re-encodes to bytes that load again and re-encode identically.
//!
//! Every model file carries a CRC-32 of its payload, so almost every mutation of a valid
//! file stops at the checksum check and the payload decoder would hardly be explored. Each
//! input is therefore loaded up to three times: as given (exercises the header and checksum
//! checks), with its header's length and CRC recomputed over the bytes after the header
//! (keeps the fuzzed version and kind), and re-wrapped as a current-version forest
//! (exercises the payload decoder with arbitrary content).

#![no_main]

use anomalyd_engine::format::{KIND_FOREST, MAGIC, unwrap, wrap};
use anomalyd_engine::{IsolationForest, Matrix};
use libfuzzer_sys::fuzz_target;

/// Size of the fixed file header (magic, version, kind, payload length, CRC).
const HEADER_LEN: usize = 24;

/// Rows of the batch scored with `score_samples`: one full 16-row block without missing
/// values (the keyed lane kernel), then one row with a missing value (the NaN kernel).
const BATCH_ROWS: usize = 17;

/// Finite values the batch rows are made of: signed zeros, a subnormal and huge magnitudes
/// probe the kernel's order-preserving integer keys against plain float compares.
const PALETTE: [f32; 8] = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-40, 1e30, -1e30];

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= HEADER_LEN && &data[..MAGIC.len()] == MAGIC {
        let kind = u16::from_le_bytes([data[10], data[11]]);
        let mut fixed = wrap(kind, &data[HEADER_LEN..]);
        fixed[8..10].copy_from_slice(&data[8..10]);
        check(&fixed);
        check(&wrap(KIND_FOREST, &data[HEADER_LEN..]));
    }
});

/// Loads `bytes`; if they are accepted, uses the model and checks its round trip.
fn check(bytes: &[u8]) {
    let Ok(model) = IsolationForest::from_bytes(bytes) else {
        return;
    };
    let d = model.n_features();
    let zeros = vec![0f32; d];
    let score = model.score_row(&zeros).expect("a row of the model's width scores");
    // Scores are finite for every model the loader accepts (it refuses max_samples < 2,
    // whose normaliser c(1) = 0 would make every score NaN).
    assert!(score.is_finite(), "score {score} of a loaded model is not finite");
    // Explanations read the per-node counts and feature statistics the decoder rebuilt.
    model.explain_row(&zeros, 3).expect("a row of the model's width explains");

    // Batch scoring goes through other kernels than `score_row`; both must agree.
    let mut values: Vec<f32> =
        (0..BATCH_ROWS * d).map(|i| PALETTE[(i / d + i % d) % PALETTE.len()]).collect();
    values[(BATCH_ROWS - 1) * d] = f32::NAN;
    let batch = Matrix::new(values, d, &[]).expect("finite or NaN values");
    let scores = model.score_samples(&batch).expect("a batch of the model's width scores");
    for (r, &s) in scores.iter().enumerate() {
        let single = model.score_row(batch.row(r)).expect("row scores");
        // Both kernels add the same per-tree values in tree order; allow for rounding only.
        assert!(
            (s - single).abs() <= 1e-6,
            "row {r}: batch score {s} differs from single-row score {single}"
        );
    }

    let encoded = model.to_bytes();
    assert!(unwrap(&encoded).is_ok(), "re-encoded header is invalid");
    let reloaded = IsolationForest::from_bytes(&encoded).expect("a re-encoded model loads again");
    // Encoding is canonical: the reloaded model writes the same bytes.
    assert_eq!(reloaded.to_bytes(), encoded, "re-encoding is not stable");
}
