//! The fleet pipeline end to end on a simulated fleet: injected faults are found, and the
//! devices it flags really are faulty.

use std::collections::{HashMap, HashSet};

use anomalyd_engine::fleet::{FleetBundle, FleetConfig, SimParams, extract_all, simulate};

use crate::data::testdata;

fn config() -> FleetConfig {
    let path = testdata().join("../config/fleet.toml");
    FleetConfig::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn simulated_fleet_faults_are_detected_with_few_false_devices() {
    let (samples, episodes) =
        simulate(&SimParams { devices: 1000, samples: 720, seed: 1, ..Default::default() });
    assert!(episodes.len() > 50, "the simulation injects faults");
    let cfg = config();
    let (rows, refused) = extract_all(&cfg, samples);
    assert!(refused.is_empty());
    let bundle = FleetBundle::train(cfg.clone(), &rows).unwrap();
    assert_eq!(bundle.cohorts.len(), 10, "every simulated cohort has enough rows for its own model");
    let scores = bundle.score(&rows, None, 24);
    let mut anomalies: HashMap<&str, Vec<i64>> = HashMap::new();
    for (r, s) in rows.iter().zip(&scores) {
        if s.is_anomaly() {
            anomalies.entry(&**r.device_id).or_default().push(r.ts.0);
        }
    }
    // An episode counts as detected when its device has an anomaly between the fault's start
    // and three hours after its end.
    let detected = episodes
        .iter()
        .filter(|e| {
            anomalies
                .get(&*e.device_id)
                .is_some_and(|ts| ts.iter().any(|&t| t >= e.start.0 && t <= e.end.0 + 3 * 3_600_000))
        })
        .count();
    let faulty: HashSet<&str> = episodes.iter().map(|e| &*e.device_id).collect();
    let true_flags = anomalies.keys().filter(|d| faulty.contains(*d)).count();
    let recall = detected as f64 / episodes.len() as f64;
    let precision = true_flags as f64 / anomalies.len() as f64;
    println!(
        "episodes {detected}/{} detected; {true_flags}/{} flagged devices faulty",
        episodes.len(),
        anomalies.len()
    );
    assert!(recall >= 0.8, "recall {recall}");
    assert!(precision >= 0.8, "precision {precision}");
}

#[test]
fn bundle_round_trips_and_rejects_tampering() {
    let (samples, _) = simulate(&SimParams { devices: 60, samples: 200, seed: 3, ..Default::default() });
    let text = std::fs::read_to_string(testdata().join("../config/fleet.toml")).unwrap();
    let cfg = FleetConfig::from_toml(&text.replace("min_rows = 5000", "min_rows = 1000")).unwrap();
    let (rows, _) = extract_all(&cfg, samples);
    let bundle = FleetBundle::train(cfg, &rows).unwrap();
    assert!(!bundle.cohorts.is_empty());
    let bytes = bundle.to_bytes();
    let back = FleetBundle::from_bytes(&bytes).unwrap();
    assert!(back == bundle, "the bundle survives a round trip");
    assert!(back.score(&rows, None, 24) == bundle.score(&rows, None, 24));
    for len in (0..bytes.len()).step_by(bytes.len() / 97 + 1) {
        assert!(FleetBundle::from_bytes(&bytes[..len]).is_err());
    }
    let mut bad = bytes.clone();
    let i = bad.len() / 3;
    bad[i] ^= 1;
    assert!(FleetBundle::from_bytes(&bad).unwrap_err().to_string().contains("checksum"));
    // A single model is not a bundle, and a bundle is not a single model.
    let single = bundle.global.to_bytes();
    assert!(FleetBundle::from_bytes(&single).unwrap_err().to_string().contains("not a fleet bundle"));
    assert!(
        anomalyd_engine::IsolationForest::from_bytes(&bytes)
            .unwrap_err()
            .to_string()
            .contains("not an isolation forest")
    );
}
