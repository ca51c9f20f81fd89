//! Fuzz target: CSV input as `anomalyd train/score/evaluate` and the telemetry readers get it.
//!
//! The same bytes go through the feature-table reader (comma and tab separated, with and
//! without a label column) and the parallel raw-telemetry reader. Neither may panic. An
//! accepted table must be rectangular, hold only finite or NaN values, and carry one label
//! per row when a label column was asked for; accepted telemetry samples must hold only
//! finite or missing metric values.

#![no_main]

use anomalyd_formats::table::{Selection, Sink, read_csv};
use anomalyd_formats::telemetry::read_csv_bytes;
use libfuzzer_sys::fuzz_target;

fn check_table(data: &[u8], sel: &Selection, tsv: bool) {
    let mut sink = Sink::default();
    if read_csv(data, "fuzz.csv", sel, &mut sink, tsv).is_err() {
        return;
    }
    let Ok(table) = sink.finish("fuzz.csv") else { return };
    let m = &table.matrix;
    assert_eq!(m.n_cols(), table.names.len());
    assert!(m.n_rows() > 0);
    assert_eq!(m.as_slice().len(), m.n_rows() * m.n_cols());
    assert!(m.as_slice().iter().all(|v| v.is_finite() || v.is_nan()));
    if let Some(labels) = &table.labels {
        assert_eq!(labels.len(), m.n_rows());
    }
    if let Some(l) = &sel.label {
        assert!(!table.names.contains(l), "the label column must not be a feature");
    }
}

fuzz_target!(|data: &[u8]| {
    check_table(data, &Selection::default(), false);
    check_table(data, &Selection::default(), true);
    // A label column named like the first header cell, when there is one.
    let first = data.split(|&b| b == b',' || b == b'\n').next().unwrap_or_default();
    if let Ok(name) = std::str::from_utf8(first) {
        let sel = Selection { features: None, label: Some(name.trim().to_string()) };
        check_table(data, &sel, false);
    }
    if let Ok(samples) = read_csv_bytes(data, "fuzz.csv") {
        assert!(!samples.is_empty());
        for s in &samples {
            assert!(s.metrics().all(|(_, v)| v.is_finite() || v.is_nan()));
        }
    }
});
