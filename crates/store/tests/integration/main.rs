//! Store tests against a real SQLite file.

mod webhooks;

use anomalyd_store::{
    AnomalyFilter, AnomalySort, AnomalyStatus, Cursor, IngestBatch, NewAnomaly, Store, StoreError,
    StoreOptions, TelemetryRow,
};
use serde_json::json;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anomalyd.db");
    let store = Store::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    (dir, store)
}

fn batch(device: &str, from: i64, n: i64, anomalous_every: i64) -> IngestBatch {
    let mut b = IngestBatch::default();
    for i in from..from + n {
        b.telemetry.push(TelemetryRow {
            device_id: device.into(),
            ts: i * 60_000,
            cohort: Some("tc52/android-13".into()),
            labels: json!({"site": "berlin"}).to_string(),
            metrics: json!({"cpu": i % 100}).to_string(),
        });
        if i % anomalous_every == 0 {
            b.anomalies.push(NewAnomaly {
                device_id: device.into(),
                ts: i * 60_000,
                cohort: Some("tc52/android-13".into()),
                anomaly_score: 0.5 + (i % 40) as f64 / 100.0,
                grade: 0.99,
                severity: if i % 2 == 0 { "high".into() } else { "critical".into() },
                detectors: vec!["model".into()],
                model_version: Some("v1".into()),
                features: json!({"cpu.mean": 1.0}),
                explanation: json!([]),
                signature: "model|cpu".into(),
                evidence_metrics: vec!["cpu".into()],
            });
        }
    }
    b
}

#[tokio::test]
async fn a_retried_batch_is_stored_once() {
    let (_dir, store) = store().await;
    let b = batch("d1", 0, 100, 10);
    let first = store.ingest(&b, 1).await.unwrap();
    assert_eq!((first.inserted, first.duplicates, first.anomalies), (100, 0, 10));
    let again = store.ingest(&b, 2).await.unwrap();
    assert_eq!((again.inserted, again.duplicates, again.anomalies), (0, 100, 0));
    let page = store.list_anomalies(&AnomalyFilter::default(), None, 1000).await.unwrap();
    assert_eq!(page.items.len(), 10);
    assert!(page.next_cursor.is_none());
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let path = path.to_str().unwrap();
    {
        let s = Store::open(path, &StoreOptions::default()).await.unwrap();
        s.ingest(&batch("d1", 0, 50, 5), 1).await.unwrap();
        s.close().await;
    }
    let s = Store::open(path, &StoreOptions::default()).await.unwrap();
    let page = s.list_anomalies(&AnomalyFilter::default(), None, 100).await.unwrap();
    assert_eq!(page.items.len(), 10);
}

#[tokio::test]
async fn keyset_pages_stay_correct_while_rows_are_inserted() {
    let (_dir, store) = store().await;
    store.ingest(&batch("d1", 0, 250, 1), 1).await.unwrap();
    let filter = AnomalyFilter::default();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut round = 0;
    loop {
        let page = store.list_anomalies(&filter, cursor, 40).await.unwrap();
        seen.extend(page.items.iter().map(|a| a.id));
        // Newer rows (live telemetry) arrive between page requests; they sort before the
        // cursor and must not shift the pages already being walked.
        store.ingest(&batch("d2", 1_000 + round * 10, 10, 1), 2).await.unwrap();
        round += 1;
        match page.next_cursor {
            Some(c) => cursor = Some(c.parse::<Cursor>().unwrap()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "strictly newest first (here ids grow with time), no repeats");
    assert_eq!(seen.len(), 250, "every row present when the walk started is seen once");
}

#[tokio::test]
async fn filters_sorts_and_bad_cursors() {
    let (_dir, store) = store().await;
    store.ingest(&batch("d1", 0, 100, 2), 1).await.unwrap();
    store.ingest(&batch("d2", 0, 100, 5), 1).await.unwrap();
    let f = AnomalyFilter { device_id: Some("d2".into()), ..Default::default() };
    let page = store.list_anomalies(&f, None, 100).await.unwrap();
    assert_eq!(page.items.len(), 20);
    assert!(page.items.iter().all(|a| a.device_id == "d2"));
    let f = AnomalyFilter { severity: Some("critical".into()), ..Default::default() };
    let page = store.list_anomalies(&f, None, 1000).await.unwrap();
    assert!(!page.items.is_empty() && page.items.iter().all(|a| a.severity == "critical"));
    let f = AnomalyFilter { from_ts: Some(50 * 60_000), to_ts: Some(60 * 60_000), ..Default::default() };
    let page = store.list_anomalies(&f, None, 1000).await.unwrap();
    assert!(page.items.iter().all(|a| (50 * 60_000..60 * 60_000).contains(&a.ts)));
    assert_eq!(page.items.len(), 5 + 2);
    // Score order across pages.
    let f = AnomalyFilter { sort: AnomalySort::Score, ..Default::default() };
    let mut scores = Vec::new();
    let mut cursor = None;
    loop {
        let p = store.list_anomalies(&f, cursor, 7).await.unwrap();
        scores.extend(p.items.iter().map(|a| (a.anomaly_score, a.id)));
        match p.next_cursor {
            Some(c) => cursor = Some(c.parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(scores.len(), 70);
    assert!(scores.windows(2).all(|w| w[0] > w[1]), "strictly descending (score, id)");
    let err = store.list_anomalies(&f, Some(Cursor::Id(5)), 7).await.unwrap_err();
    assert!(matches!(err, StoreError::BadCursor(_)));
    assert!("zz".parse::<Cursor>().is_err());
}

#[tokio::test]
async fn status_changes_and_unknown_ids() {
    let (_dir, store) = store().await;
    store.ingest(&batch("d1", 0, 10, 5), 1).await.unwrap();
    let id = store.list_anomalies(&AnomalyFilter::default(), None, 1).await.unwrap().items[0].id;
    let a = store.set_anomaly_status(id, AnomalyStatus::Acknowledged, Some("looking"), 5).await.unwrap();
    assert_eq!((a.status.as_str(), a.note.as_deref(), a.updated_at), ("acknowledged", Some("looking"), 5));
    let a = store.set_anomaly_status(id, AnomalyStatus::Resolved, None, 6).await.unwrap();
    assert_eq!((a.status.as_str(), a.note.as_deref()), ("resolved", Some("looking")));
    let open = AnomalyFilter { status: Some(AnomalyStatus::Open), ..Default::default() };
    assert_eq!(store.list_anomalies(&open, None, 100).await.unwrap().items.len(), 1);
    assert!(matches!(store.anomaly(999_999).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.set_anomaly_status(999_999, AnomalyStatus::Open, None, 7).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!("closed".parse::<AnomalyStatus>().is_err());
}

#[tokio::test]
async fn devices_are_listed_by_id_with_their_latest_samples() {
    let (_dir, store) = store().await;
    for d in ["d3", "d1", "d2"] {
        store.ingest(&batch(d, 0, 20, 100), 1).await.unwrap();
    }
    let p1 = store.list_devices(None, None, 2).await.unwrap();
    assert_eq!(p1.items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d1", "d2"]);
    let p2 = store.list_devices(None, p1.next_cursor.as_deref(), 2).await.unwrap();
    assert_eq!(p2.items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d3"]);
    assert!(p2.next_cursor.is_none());
    let d = store.device("d2").await.unwrap();
    assert_eq!((d.first_seen, d.last_seen, d.cohort.as_deref()), (0, 19 * 60_000, Some("tc52/android-13")));
    let recent = store.recent_telemetry("d2", 3).await.unwrap();
    assert_eq!(recent.iter().map(|t| t.ts / 60_000).collect::<Vec<_>>(), [19, 18, 17]);
    assert!(matches!(store.device("nope").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.list_devices(None, Some("garbage"), 2).await, Err(StoreError::BadCursor(_))));
}

#[tokio::test]
async fn a_device_s_samples_are_found_before_and_after_they_move_to_the_device_index() {
    let (_dir, store) = store().await;
    // Minutes 0..10 moved into the main per-device list, 10..15 still in the recent one.
    store.ingest(&batch("d1", 0, 10, 100), 1).await.unwrap();
    store.ingest(&batch("d2", 0, 3, 100), 1).await.unwrap();
    assert_eq!(store.compact_device_index(1_000).await.unwrap(), 0, "below the threshold nothing moves");
    assert_eq!(store.compact_device_index(1).await.unwrap(), 13);
    assert_eq!(store.compact_device_index(1).await.unwrap(), 0, "the recent list is empty after a move");
    store.ingest(&batch("d1", 10, 5, 100), 1).await.unwrap();

    // Newest first across both lists, and only the device's own samples.
    let recent = store.recent_telemetry("d1", 8).await.unwrap();
    assert_eq!(recent.iter().map(|t| t.ts / 60_000).collect::<Vec<_>>(), [14, 13, 12, 11, 10, 9, 8, 7]);
    assert_eq!(recent[0].metrics, json!({"cpu": 14}).to_string());
    let all = store.recent_telemetry("d1", 100).await.unwrap();
    assert_eq!(all.len(), 15);
    assert_eq!(store.device("d1").await.unwrap().last_seen, 14 * 60_000, "latest sample in the recent list");
    assert_eq!(store.device("d2").await.unwrap().last_seen, 2 * 60_000, "latest sample in the main list");

    // Samples already moved are still recognised as duplicates.
    let again = store.ingest(&batch("d1", 0, 15, 100), 2).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 15));
    assert_eq!(store.recent_telemetry("d1", 100).await.unwrap().len(), 15);

    // An incident's evidence reads the samples up to its anomaly from both lists: minutes
    // 1..15 of a third device moved, then its anomalous minute 15 still in the recent list.
    store.ingest(&batch("d3", 1, 14, 1_000), 3).await.unwrap();
    store.compact_device_index(1).await.unwrap();
    store.ingest(&batch("d3", 15, 1, 1), 3).await.unwrap();
    let incidents = store.list_incidents(&Default::default(), None, 10).await.unwrap();
    assert_eq!(incidents.items[0].device_id, "d3");
    let evidence: serde_json::Value = serde_json::from_str(&incidents.items[0].evidence).unwrap();
    let times: Vec<i64> = evidence["recent_samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ts"].as_i64().unwrap() / 60_000)
        .collect();
    assert_eq!(times, (4..=15).collect::<Vec<_>>(), "the 12 samples up to the anomaly, oldest first");
}

/// The per-device sample lists against a plain model of what was stored: random batches of
/// a few devices (late samples, retried samples, one device with more samples than a run
/// row holds), moves at random points, a reopen of the file, and after every step each
/// device's latest samples and latest time checked.
#[tokio::test]
async fn a_device_s_latest_samples_stay_exact_across_moves_late_samples_retries_and_reopens() {
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anomalyd.db");
    let path = path.to_str().unwrap();
    let mut store = Store::open(path, &StoreOptions::default()).await.unwrap();
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
    let devices = ["a", "b", "c", "d"];
    let mut stored: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    let mut sent: Vec<(&str, i64)> = Vec::new();
    for step in 0..60 {
        let mut b = IngestBatch::default();
        for _ in 0..rng.random_range(1..400) {
            // Device `a` sends most; times go forward with late ones mixed in, and now and
            // then a sample already sent is sent again.
            let (device, ts) = if !sent.is_empty() && rng.random_bool(0.05) {
                sent[rng.random_range(0..sent.len())]
            } else {
                let device = if rng.random_bool(0.7) { "a" } else { devices[rng.random_range(1..4)] };
                let back = if rng.random_bool(0.1) { rng.random_range(0..500) } else { 0 };
                (device, (step * 400 + rng.random_range(0..400) - back) * 1_000)
            };
            if b.telemetry.iter().any(|t| t.device_id == device && t.ts == ts) {
                continue;
            }
            sent.push((device, ts));
            stored.entry(device).or_default().insert(ts);
            b.telemetry.push(TelemetryRow {
                device_id: device.into(),
                ts,
                cohort: None,
                labels: String::new(),
                metrics: json!({"t": ts}).to_string(),
            });
        }
        store.ingest(&b, 1).await.unwrap();
        if rng.random_bool(0.3) {
            store.compact_device_index(1).await.unwrap();
        }
        if step % 20 == 19 {
            store.close().await;
            store = Store::open(path, &StoreOptions::default()).await.unwrap();
        }
        for (device, times) in &stored {
            for limit in [1, 12, 300, 5_000] {
                let got: Vec<i64> =
                    store.recent_telemetry(device, limit).await.unwrap().iter().map(|t| t.ts).collect();
                let want: Vec<i64> = times.iter().rev().take(limit as usize).copied().collect();
                assert_eq!(got, want, "step {step}, device {device}, limit {limit}");
            }
            let last = store.device(device).await.unwrap().last_seen;
            assert_eq!(last, *times.last().unwrap(), "step {step}, device {device}");
        }
    }
    assert!(stored["a"].len() > 256 * 3, "device a fills several run rows per move");
}

#[tokio::test]
async fn a_locked_database_is_reported_as_busy_not_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let path = path.to_str().unwrap();
    let holder = Store::open(path, &StoreOptions::default()).await.unwrap();
    let impatient =
        StoreOptions { busy_timeout: std::time::Duration::from_millis(100), ..Default::default() };
    let writer = Store::open(path, &impatient).await.unwrap();
    let lock = holder.hold_write_lock().await.unwrap();
    let err = writer.ingest(&batch("d1", 0, 5, 1), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Busy(_)), "{err:?}");
    drop(lock);
    // Nothing of the refused batch was written; the retry succeeds.
    let out = writer.ingest(&batch("d1", 0, 5, 1), 1).await.unwrap();
    assert_eq!((out.inserted, out.anomalies), (5, 5));
}

/// One sample of `device` at minute `minute` with the given cohort and labels.
fn sample(device: &str, minute: i64, cohort: Option<&str>, labels: &str) -> IngestBatch {
    IngestBatch {
        telemetry: vec![TelemetryRow {
            device_id: device.into(),
            ts: minute * 60_000,
            cohort: cohort.map(str::to_string),
            labels: labels.into(),
            metrics: json!({"cpu": 1}).to_string(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn device_rows_follow_every_change_of_cohort_labels_and_first_sample() {
    // The ingest path skips devices whose stored row a batch would not change; every change
    // must still reach the table, from this handle and from one opened later on the same file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anomalyd.db");
    let path = path.to_str().unwrap();
    let store = Store::open(path, &StoreOptions::default()).await.unwrap();
    let row = |d: anomalyd_store::DeviceRecord| (d.cohort, d.labels, d.first_seen);
    store.ingest(&sample("d1", 10, Some("phone"), r#"{"fw":"4.2"}"#), 1).await.unwrap();
    // Nothing new: a later sample without cohort or labels.
    store.ingest(&sample("d1", 11, None, ""), 1).await.unwrap();
    assert_eq!(
        row(store.device("d1").await.unwrap()),
        (Some("phone".into()), r#"{"fw":"4.2"}"#.into(), 600_000)
    );
    store.ingest(&sample("d1", 12, Some("scanner"), ""), 1).await.unwrap();
    assert_eq!(
        row(store.device("d1").await.unwrap()),
        (Some("scanner".into()), r#"{"fw":"4.2"}"#.into(), 600_000)
    );
    store.ingest(&sample("d1", 13, None, r#"{"fw":"4.3"}"#), 1).await.unwrap();
    assert_eq!(
        row(store.device("d1").await.unwrap()),
        (Some("scanner".into()), r#"{"fw":"4.3"}"#.into(), 600_000)
    );
    store.ingest(&sample("d1", 5, None, ""), 1).await.unwrap();
    assert_eq!(
        row(store.device("d1").await.unwrap()),
        (Some("scanner".into()), r#"{"fw":"4.3"}"#.into(), 300_000)
    );
    store.close().await;

    // A new handle knows nothing yet and must learn the stored row, not assume it.
    let store = Store::open(path, &StoreOptions::default()).await.unwrap();
    store.ingest(&sample("d1", 20, None, ""), 1).await.unwrap();
    store.ingest(&sample("d1", 21, Some("phone"), ""), 1).await.unwrap();
    assert_eq!(
        row(store.device("d1").await.unwrap()),
        (Some("phone".into()), r#"{"fw":"4.3"}"#.into(), 300_000)
    );
    store.ingest(&sample("d1", 22, Some("phone"), r#"{"fw":"4.3"}"#), 1).await.unwrap();
    store.ingest(&sample("d1", 1, Some("phone"), r#"{"fw":"4.3"}"#), 1).await.unwrap();
    assert_eq!(
        row(store.device("d1").await.unwrap()),
        (Some("phone".into()), r#"{"fw":"4.3"}"#.into(), 60_000)
    );
    store.close().await;
}
