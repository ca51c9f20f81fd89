//! The model file: round trip, golden files of format versions 1 and 2, and refusal of bad files.

use anomalyd_engine::{EngineError, ForestParams, IsolationForest, ModelFormatError, RandomStream, metrics};

use crate::data::{odds, sklearn_scores, testdata};

fn small_model() -> IsolationForest {
    let data = odds("glass");
    IsolationForest::fit(
        &data.matrix,
        data.names,
        &ForestParams { n_trees: 20, seed: 1, ..Default::default() },
    )
    .unwrap()
}

#[test]
fn round_trip_keeps_every_score() {
    let data = odds("breastw");
    let params = ForestParams { n_trees: 300, seed: 9, ..Default::default() };
    let model = IsolationForest::fit(&data.matrix, data.names.clone(), &params).unwrap();
    let bytes = model.to_bytes();
    let loaded = IsolationForest::from_bytes(&bytes).unwrap();
    assert_eq!(loaded, model);
    assert_eq!(loaded.score_samples(&data.matrix).unwrap(), model.score_samples(&data.matrix).unwrap());
    assert_eq!(loaded.to_bytes(), bytes);
}

/// `tests/golden/breastw_v1.adm` was written by format version 1 (seed 7, 100 trees, on
/// breastw). It must keep loading and scoring as it did when it was written.
#[test]
fn golden_format_v1_file_still_loads() {
    let path = testdata().join("golden/breastw_v1.adm");
    let bytes = std::fs::read(&path).unwrap();
    let model = IsolationForest::from_bytes(&bytes).unwrap();
    assert_eq!(model.n_trees(), 100);
    assert_eq!(model.params().seed(), 7);
    assert_eq!(model.feature_names().len(), 9);
    let data = odds("breastw");
    let scores = model.score_samples(&data.matrix).unwrap();
    // Independent check: it ranks breastw as well as scikit-learn does (0.9855 in baseline.json).
    let auc = metrics::roc_auc(&scores, &data.labels).unwrap();
    assert!(auc > 0.97, "golden model AUC {auc}");
    // Saved again it becomes a version-2 file holding the same model.
    let again = model.to_bytes();
    assert_eq!(anomalyd_engine::format::unwrap_versioned(&bytes).unwrap().0, 1);
    assert_eq!(anomalyd_engine::format::unwrap_versioned(&again).unwrap().0, 2);
    assert_eq!(IsolationForest::from_bytes(&again).unwrap(), model);
}

/// `tests/golden/breastw_v2_sklearn.adm` was written by format version 2 with scikit-learn's
/// random stream (seed 0, 100 trees, on breastw). It must keep loading, remember its stream,
/// and score breastw as scikit-learn 1.9.1 does (`testdata/odds/sklearn_scores.json`).
#[test]
fn golden_format_v2_file_still_loads() {
    let bytes = std::fs::read(testdata().join("golden/breastw_v2_sklearn.adm")).unwrap();
    let model = IsolationForest::from_bytes(&bytes).unwrap();
    assert_eq!(model.params().random_stream(), RandomStream::ScikitLearn);
    let data = odds("breastw");
    let scores = model.score_samples(&data.matrix).unwrap();
    let reference = sklearn_scores();
    for (ours, sk) in scores.iter().zip(reference["sets"]["breastw"]["0"].as_array().unwrap()) {
        assert!((*ours as f64 - sk.as_f64().unwrap()).abs() < 2e-6);
    }
    // The reader and writer agree on the v2 layout byte for byte.
    assert_eq!(model.to_bytes(), bytes);
}

#[test]
fn every_truncation_is_a_clear_error() {
    let bytes = small_model().to_bytes();
    for len in 0..bytes.len() {
        let err = IsolationForest::from_bytes(&bytes[..len]).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                EngineError::Model(ModelFormatError::Truncated { .. } | ModelFormatError::BadMagic)
            ),
            "length {len}: {msg}"
        );
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let bytes = small_model().to_bytes();
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x5A;
        assert!(IsolationForest::from_bytes(&bad).is_err(), "flip at byte {i} went unnoticed");
    }
}

#[test]
fn foreign_and_future_files_are_named_as_such() {
    let err = IsolationForest::from_bytes(b"\x89PNG\r\n\x1a\n....").unwrap_err();
    assert_eq!(err, EngineError::Model(ModelFormatError::BadMagic));
    assert!(err.to_string().contains("not an anomalyd model"));
    let mut future = small_model().to_bytes();
    future[8] = 99;
    let err = IsolationForest::from_bytes(&future).unwrap_err();
    assert!(err.to_string().contains("version 99 is not supported"), "{err}");
}

#[test]
fn valid_checksum_over_invalid_content_is_refused() {
    use anomalyd_engine::format::{unwrap, wrap};
    let bytes = small_model().to_bytes();
    let (kind, payload) = unwrap(&bytes).unwrap();
    let mut payload = payload.to_vec();
    // Drop the last byte and re-wrap: checksum fine, content short.
    payload.pop();
    let err = IsolationForest::from_bytes(&wrap(kind, &payload)).unwrap_err();
    assert!(matches!(err, EngineError::Model(ModelFormatError::Invalid(_))), "{err}");
    // Corrupt each position in turn under a recomputed checksum: never a panic.
    let (_, original) = unwrap(&bytes).unwrap();
    for i in 0..original.len() {
        let mut p = original.to_vec();
        p[i] = p[i].wrapping_add(0x81);
        let _ = IsolationForest::from_bytes(&wrap(kind, &p));
    }
}
