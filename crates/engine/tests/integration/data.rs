//! Loads the labelled ODDS data sets copied under `testdata/odds`.

use std::io::Read;
use std::path::PathBuf;

use anomalyd_engine::Matrix;

pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

pub struct Labelled {
    pub matrix: Matrix,
    pub names: Vec<String>,
    pub labels: Vec<bool>,
}

/// Reads `testdata/odds/<name>.csv[.gz]`: numeric feature columns, then `label`.
pub fn odds(name: &str) -> Labelled {
    let dir = testdata().join("odds");
    let plain = dir.join(format!("{name}.csv"));
    let text = if plain.exists() {
        std::fs::read_to_string(&plain).unwrap()
    } else {
        let gz = std::fs::File::open(dir.join(format!("{name}.csv.gz"))).unwrap();
        let mut s = String::new();
        flate2::read::GzDecoder::new(gz).read_to_string(&mut s).unwrap();
        s
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(*header.last().unwrap(), "label");
    let d = header.len() - 1;
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let mut fields = line.split(',');
        for _ in 0..d {
            values.push(fields.next().unwrap().parse::<f64>().unwrap() as f32);
        }
        labels.push(fields.next().unwrap().trim() == "1");
    }
    let names: Vec<String> = header[..d].iter().map(|s| s.to_string()).collect();
    Labelled { matrix: Matrix::new(values, d, &names).unwrap(), names, labels }
}

/// Names of all data sets with their scikit-learn reference (`sk100` mean ROC-AUC).
pub fn baseline() -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(testdata().join("odds/baseline.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sets = json["datasets"].as_object().unwrap();
    sets.iter().map(|(k, v)| (k.clone(), v["sk100"]["roc_auc_mean"].as_f64().unwrap())).collect()
}

/// scikit-learn's per-row reference scores, `testdata/odds/sklearn_scores.json` (made by
/// `bench/sklearn_reference_scores.py`).
pub fn sklearn_scores() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(testdata().join("odds/sklearn_scores.json")).unwrap())
        .unwrap()
}
