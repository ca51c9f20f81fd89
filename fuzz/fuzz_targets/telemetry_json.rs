//! Fuzz target: telemetry as the ingest endpoint receives it, a JSON array or NDJSON.
//!
//! Every item goes through `sample_from_json`, the validation shared by `POST
//! /api/v1/telemetry`, `POST /api/v1/score` and the NDJSON telemetry reader. It must never
//! panic; an accepted sample must hold only finite or missing (NaN) metric values, a
//! non-empty device id, and metric names that match its values one to one. Accepted samples
//! then go through a device's streaming state, which must not panic either.
//!
//! The typed fast path (`sample_from_json_text`, `samples_from_json_array`) must agree: any
//! sample it accepts is exactly what `sample_from_json` makes of the same text.

#![no_main]

use anomalyd_engine::fleet::json::{Interner, sample_from_json, sample_from_json_text, samples_from_json_array};
use anomalyd_engine::fleet::{DeviceState, FleetConfig};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = include_str!("../../config/fleet.toml");

fuzz_target!(|data: &[u8]| {
    let config = FleetConfig::from_toml(CONFIG).expect("shipped config");
    let Ok(text) = std::str::from_utf8(data) else { return };
    // As a JSON array, and line by line as NDJSON.
    let mut items: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => Vec::new(),
    };
    for line in text.lines() {
        let Some(fast) = sample_from_json_text(line, &mut Interner::default()) else { continue };
        let value = serde_json::from_str(line).expect("the fast path accepted malformed JSON");
        let checked = sample_from_json(value, &mut Interner::default());
        assert_eq!(Ok(&fast), checked.as_ref(), "fast and checked paths differ on {line}");
    }
    if let Some(fast) = samples_from_json_array(data, &mut Interner::default()) {
        assert_eq!(fast.len(), items.len(), "the fast path read another number of samples");
        for (f, item) in fast.iter().zip(&items) {
            assert_eq!(Ok(f), sample_from_json(item.clone(), &mut Interner::default()).as_ref());
        }
    }
    items.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    let mut interner = Interner::default();
    let mut state = DeviceState::new(&config);
    let mut rows = Vec::new();
    for item in items.into_iter().take(256) {
        let Ok(sample) = sample_from_json(item, &mut interner) else { continue };
        assert!(!sample.device_id.is_empty(), "accepted an empty device id");
        assert_eq!(sample.layout.names().len(), sample.values.len(), "names and values differ");
        assert!(sample.values.iter().all(|v| v.is_finite() || v.is_nan()), "accepted an infinite value");
        let _ = state.push(&config, sample, &mut rows);
    }
    state.flush(&config, &mut rows);
    for row in &rows {
        assert_eq!(row.values.len(), config.features.len());
    }
});
