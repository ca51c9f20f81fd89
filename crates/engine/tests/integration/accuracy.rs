//! Accuracy against scikit-learn on all shared ODDS data sets.
//!
//! Protocol of `baseline.json`: 100 trees, max_samples = min(256, n), fit on all rows, score
//! the same rows, mean ROC-AUC over seeds 0..4; ours must be at least sklearn's mean − 0.01.

use anomalyd_engine::{ForestParams, IsolationForest, metrics};

use crate::data::{baseline, odds};

#[test]
fn roc_auc_within_001_of_scikit_learn_on_every_odds_set() {
    let sets = baseline();
    assert_eq!(sets.len(), 26, "all 26 shared data sets are checked");
    let mut failures = Vec::new();
    let mut report = String::new();
    for (name, sk) in &sets {
        let data = odds(name);
        let mut aucs = Vec::new();
        for seed in 0..5 {
            let params = ForestParams { n_trees: 100, seed, ..Default::default() };
            let model = IsolationForest::fit(&data.matrix, data.names.clone(), &params).unwrap();
            let scores = model.score_samples(&data.matrix).unwrap();
            aucs.push(metrics::roc_auc(&scores, &data.labels).unwrap());
        }
        let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
        report.push_str(&format!("{name:18} ours {mean:.4}  sklearn {sk:.4}  diff {:+.4}\n", mean - sk));
        if mean < sk - 0.01 {
            failures.push(format!("{name}: {mean:.4} < {sk:.4} - 0.01"));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "below scikit-learn on: {failures:?}\n{report}");
}
