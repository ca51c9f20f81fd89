//! Explanations name the feature that makes a row anomalous, with the right direction and range.

use anomalyd_engine::{Direction, ForestParams, IsolationForest, Matrix, Severity};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// 1 000 rows of 4 bell-shaped features (mean of twelve uniforms in [0, 10), light tails);
/// row 0 sits at the centre except for an extreme value in `feature`.
fn planted(feature: usize, value: f32) -> (Matrix, Vec<String>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut data: Vec<f32> =
        (0..4000).map(|_| (0..12).map(|_| rng.random_range(0.0..10.0f32)).sum::<f32>() / 12.0).collect();
    data[..4].fill(5.0);
    data[feature] = value;
    let names = (0..4).map(|i| format!("m{i}")).collect::<Vec<_>>();
    (Matrix::new(data, 4, &names).unwrap(), names)
}

fn numpy_quantile(mut v: Vec<f32>, q: f64) -> f32 {
    v.sort_by(f32::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    (v[lo] as f64 + (pos - lo as f64) * (v[hi] as f64 - v[lo] as f64)) as f32
}

#[test]
fn the_planted_feature_leads_the_explanation_with_its_direction() {
    for (feature, value, direction) in [(2, 60.0, Direction::Above), (1, -50.0, Direction::Below)] {
        let (m, names) = planted(feature, value);
        let model =
            IsolationForest::fit(&m, names, &ForestParams { n_trees: 200, seed: 1, ..Default::default() })
                .unwrap();
        let (_, all) = model.explain_row(m.row(0), 4).unwrap();
        let total: f32 = all.iter().map(|a| a.weight).sum();
        assert!((total - 1.0).abs() < 1e-4, "weights sum to 1, got {total}");
        assert_eq!(all[0].feature, feature);
        assert_eq!(all[0].name, format!("m{feature}"));
        assert!(all[0].weight > 0.5, "dominant weight, got {}", all[0].weight);
        assert_eq!(all[0].direction, direction);
        assert_eq!(all[0].value, value);
        // Normal range is the training p05..p95 of that column (all 1 000 rows are in the
        // calibration sample here), computed independently.
        let col: Vec<f32> = (0..m.n_rows()).map(|r| m.row(r)[feature]).collect();
        assert!((all[0].normal_low - numpy_quantile(col.clone(), 0.05)).abs() < 1e-5);
        assert!((all[0].normal_high - numpy_quantile(col, 0.95)).abs() < 1e-5);
    }
}

#[test]
fn assess_labels_grades_and_explains_in_one_pass() {
    let (train, names) = planted(0, 5.0);
    let model =
        IsolationForest::fit(&train, names.clone(), &ForestParams { seed: 3, ..Default::default() }).unwrap();
    // Training rows plus one unseen row far outside the training range in every feature.
    let mut rows = train.as_slice().to_vec();
    rows.extend_from_slice(&[100.0, -90.0, 80.0, 70.0]);
    let m = Matrix::new(rows, 4, &names).unwrap();
    let outlier = m.n_rows() - 1;
    let plain = model.assess(&m, None).unwrap();
    let explained = model.assess(&m, Some(2)).unwrap();
    let scores = model.score_samples(&m).unwrap();
    for i in 0..m.n_rows() {
        assert_eq!(plain[i].anomaly_score, scores[i]);
        assert_eq!(explained[i].anomaly_score, scores[i]);
        assert!(explained[i].explanation.len() <= 2);
        assert_eq!(plain[i].is_anomaly, scores[i] > 0.5);
    }
    assert!(plain[outlier].is_anomaly);
    assert_eq!(plain[outlier].grade, 1.0);
    assert_eq!(plain[outlier].severity, Severity::Critical);
    let median_grade = {
        let mut g: Vec<f32> = plain[..outlier].iter().map(|a| a.grade).collect();
        g.sort_by(f32::total_cmp);
        g[g.len() / 2]
    };
    assert!((median_grade - 0.5).abs() < 0.05, "grades are uniform on training data: {median_grade}");
}

#[test]
fn missing_values_follow_the_larger_branch_and_infinity_is_rejected() {
    let (m, names) = planted(0, 100.0);
    let model = IsolationForest::fit(&m, names, &ForestParams::default()).unwrap();
    let s = model.score_row(&[f32::NAN, 5.0, 5.0, 5.0]).unwrap();
    // A row missing one value is scored, and the larger branch keeps it looking normal.
    assert!(s.is_finite() && s < 0.5, "score {s}");
    let err = model.score_row(&[1.0, f32::INFINITY, 5.0, 5.0]).unwrap_err().to_string();
    assert!(err.contains("`m1`") && err.contains("inf"), "{err}");
    let err = model.score_row(&[1.0, 2.0]).unwrap_err().to_string();
    assert!(err.contains("expects 4") && err.contains("has 2"), "{err}");
}

#[test]
fn nan_in_training_is_ignored_when_choosing_splits() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    let mut data: Vec<f32> = (0..2000).map(|_| rng.random_range(0.0..1.0)).collect();
    for r in (0..1000).step_by(3) {
        data[r * 2] = f32::NAN;
    }
    data[2] = 50.0; // row 1, feature 0: extreme
    let m = Matrix::new(data, 2, &[]).unwrap();
    let model = IsolationForest::fit(&m, vec!["a".into(), "b".into()], &ForestParams::default()).unwrap();
    let scores = model.score_samples(&m).unwrap();
    assert!(scores.iter().all(|s| s.is_finite()));
    let max = scores.iter().cloned().fold(f32::MIN, f32::max);
    assert_eq!(scores[1], max, "the extreme row still scores highest");
}
