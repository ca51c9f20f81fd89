//! Fuzz target: the model loader (`IsolationForest::from_bytes`) on untrusted bytes.
//!
//! The loader promises to never panic, whatever the input, and a model it accepts must be
//! usable: scoring and explaining work, and the model re-encodes to bytes that load again
//! and re-encode identically.
//!
//! Every model file carries a CRC-32 of its payload, so almost every mutation of a valid
//! file stops at the checksum check and the payload decoder would hardly be explored. Each
//! input is therefore loaded twice: as given (exercises the header and checksum checks),
//! and with its header's length and CRC recomputed over the bytes after the header
//! (exercises the payload decoder with arbitrary content).

#![no_main]

use anomalyd_engine::IsolationForest;
use anomalyd_engine::format::{KIND_FOREST, MAGIC, unwrap, wrap};
use libfuzzer_sys::fuzz_target;

/// Size of the fixed file header (magic, version, kind, payload length, CRC).
const HEADER_LEN: usize = 24;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= HEADER_LEN && &data[..MAGIC.len()] == MAGIC {
        // Keep the fuzzed version and kind fields, fix length and checksum.
        let kind = u16::from_le_bytes([data[10], data[11]]);
        let mut fixed = wrap(kind, &data[HEADER_LEN..]);
        fixed[8..10].copy_from_slice(&data[8..10]);
        check(&fixed);
        // And once more as a current-version forest, so version/kind mutations do not hide
        // the payload from the decoder.
        check(&wrap(KIND_FOREST, &data[HEADER_LEN..]));
    }
});

/// Loads `bytes`; if they are accepted, uses the model and checks its round trip.
fn check(bytes: &[u8]) {
    let Ok(model) = IsolationForest::from_bytes(bytes) else {
        return;
    };
    let zeros = vec![0f32; model.n_features()];
    let score = model.score_row(&zeros).expect("a row of the model's width scores");
    assert!(score.is_finite(), "score {score} of a loaded model is not finite");
    // Explanations read the per-node counts and feature statistics the decoder rebuilt.
    model.explain_row(&zeros, 3).expect("a row of the model's width explains");

    let encoded = model.to_bytes();
    assert!(unwrap(&encoded).is_ok(), "re-encoded header is invalid");
    let reloaded = IsolationForest::from_bytes(&encoded).expect("a re-encoded model loads again");
    // Encoding is canonical: the reloaded model writes the same bytes.
    assert_eq!(reloaded.to_bytes(), encoded, "re-encoding is not stable");
}
