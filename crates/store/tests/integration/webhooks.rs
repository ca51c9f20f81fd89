//! The webhook outbox: rows written with the anomaly that opened an incident, claimed under
//! leases, fenced by attempt number.

use anomalyd_store::{Cursor, DeliveryStatus, NewWebhook, StoreError};

use super::{batch, store};

fn hook(url: &str, min_severity: &str) -> NewWebhook {
    NewWebhook {
        url: url.into(),
        secret: "s3cret-s3cret-s3cret".into(),
        min_severity: min_severity.into(),
        description: String::new(),
    }
}

#[tokio::test]
async fn deliveries_are_queued_in_the_batch_that_opens_an_incident() {
    let (_dir, store) = store().await;
    // No webhook: an opened incident queues nothing.
    let out = store.ingest(&batch("d1", 0, 10, 10), 1).await.unwrap();
    assert_eq!((out.incidents_opened.len(), out.webhook_deliveries), (1, 0));

    let high = store.create_webhook(&hook("http://a.invalid/hook", "high"), 2).await.unwrap();
    let critical = store.create_webhook(&hook("http://b.invalid/hook", "critical"), 2).await.unwrap();
    let gone = store.create_webhook(&hook("http://c.invalid/hook", "low"), 2).await.unwrap();
    store.delete_webhook(gone.id, 3).await.unwrap();
    assert!(matches!(store.delete_webhook(gone.id, 4).await, Err(StoreError::NotFound { .. })));
    let live: Vec<i64> = store.list_webhooks().await.unwrap().iter().map(|w| w.id).collect();
    assert_eq!(live, [high.id, critical.id]);

    // A `high` anomaly opens an incident: only the hook that takes `high` gets it.
    let out = store.ingest(&batch("d2", 0, 1, 1), 5).await.unwrap();
    assert_eq!((out.incidents_opened.len(), out.webhook_deliveries), (1, 1));
    // A `critical` one with the same signature joins that incident: no second alert.
    let out = store.ingest(&batch("d2", 1, 1, 1), 6).await.unwrap();
    assert_eq!((out.anomalies_deduplicated, out.webhook_deliveries), (1, 0));
    // A `critical` one on another device opens an incident: both hooks.
    let out = store.ingest(&batch("d3", 1, 1, 1), 7).await.unwrap();
    assert_eq!(out.webhook_deliveries, 2);
    // The same batch again stores nothing and queues nothing.
    let out = store.ingest(&batch("d3", 1, 1, 1), 8).await.unwrap();
    assert_eq!((out.duplicates, out.webhook_deliveries), (1, 0));

    let page = store.list_deliveries(high.id, None, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.items.iter().all(|d| d.status == "pending" && d.attempts == 0 && d.payload.is_none()));
    assert_ne!(page.items[0].idempotency_key, page.items[1].idempotency_key);
    let newest = &page.items[0];
    let incident = store.incident(newest.incident_id).await.unwrap();
    let anomaly = store.anomaly(newest.anomaly_id).await.unwrap();
    assert_eq!((incident.device_id.as_str(), anomaly.incident_id), ("d3", Some(incident.id)));
    assert_eq!(newest.event, "incident.opened");
    assert!(store.list_deliveries(gone.id, None, None, 10).await.unwrap().items.is_empty());

    // Keyset pages.
    let first = store.list_deliveries(high.id, None, None, 1).await.unwrap();
    let cursor: Cursor = first.next_cursor.as_deref().unwrap().parse().unwrap();
    let second = store.list_deliveries(high.id, None, Some(cursor), 1).await.unwrap();
    assert_eq!((first.items[0].id > second.items[0].id, second.next_cursor), (true, None));
}

#[tokio::test]
async fn claims_are_leased_and_fenced_by_attempt() {
    let (_dir, store) = store().await;
    let w = store.create_webhook(&hook("http://a.invalid/hook", "low"), 1).await.unwrap();
    store.ingest(&batch("d1", 0, 1, 1), 10).await.unwrap();

    let claimed = store.claim_deliveries(100, 200, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0].delivery;
    assert_eq!((d.status.as_str(), d.attempts, d.lease_until), ("delivering", 1, Some(200)));
    assert_eq!(claimed[0].webhook.secret, "s3cret-s3cret-s3cret");
    // Leased: nobody else takes it until the lease ends.
    assert!(store.claim_deliveries(150, 300, 10).await.unwrap().is_empty());
    // The first worker is presumed dead: the row is due again and its number moves on.
    let again = store.claim_deliveries(200, 400, 10).await.unwrap();
    assert_eq!(again[0].delivery.attempts, 2);
    assert!(!store.delivery_succeeded(d.id, 1, 200, 210).await.unwrap(), "a stale attempt changed the row");

    let body = store.set_delivery_payload(d.id, "{\"a\":1}").await.unwrap();
    assert_eq!(store.set_delivery_payload(d.id, "{\"b\":2}").await.unwrap(), body, "the body is fixed once");

    assert!(store.delivery_failed(d.id, 2, Some(500), "HTTP 500", Some(1_000), 220).await.unwrap());
    let row = store.delivery(w.id, d.id).await.unwrap();
    assert_eq!((row.status.as_str(), row.last_status, row.next_attempt_at), ("pending", Some(500), 1_000));
    assert!(store.claim_deliveries(999, 2_000, 10).await.unwrap().is_empty(), "not due yet");
    let third = store.claim_deliveries(1_000, 2_000, 10).await.unwrap();
    assert_eq!(third[0].delivery.attempts, 3);
    // A shutdown gives it back uncounted.
    assert!(store.release_delivery(d.id, 3, 1_100).await.unwrap());
    let row = store.delivery(w.id, d.id).await.unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 2));
    assert_eq!(store.unfinished_deliveries().await.unwrap(), 1);

    let fourth = store.claim_deliveries(1_100, 2_000, 10).await.unwrap();
    assert_eq!(fourth[0].delivery.attempts, 3);
    assert!(store.delivery_failed(d.id, 3, Some(500), "HTTP 500", None, 1_200).await.unwrap());
    let dead = store.list_deliveries(w.id, Some(DeliveryStatus::Dead), None, 10).await.unwrap();
    assert_eq!(dead.items.len(), 1);
    assert_eq!(dead.items[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(store.unfinished_deliveries().await.unwrap(), 0);

    // A dead letter can be queued again, with a fresh budget; only a dead one.
    let requeued = store.requeue_delivery(w.id, d.id, 1_300).await.unwrap();
    assert_eq!((requeued.status.as_str(), requeued.attempts), ("pending", 0));
    assert!(matches!(store.requeue_delivery(w.id, d.id, 1_301).await, Err(StoreError::Conflict(_))));
    let claimed = store.claim_deliveries(1_400, 2_000, 10).await.unwrap();
    assert!(store.delivery_succeeded(d.id, claimed[0].delivery.attempts, 204, 1_500).await.unwrap());
    let row = store.delivery(w.id, d.id).await.unwrap();
    assert_eq!((row.status.as_str(), row.delivered_at, row.last_error), ("delivered", Some(1_500), None));
}

#[tokio::test]
async fn deleting_a_webhook_dead_letters_its_pending_deliveries() {
    let (_dir, store) = store().await;
    let w = store.create_webhook(&hook("http://a.invalid/hook", "low"), 1).await.unwrap();
    store.ingest(&batch("d1", 0, 1, 1), 10).await.unwrap();
    store.ingest(&batch("d2", 0, 1, 1), 10).await.unwrap();
    // One attempt is running when the hook goes; it keeps its lease and records its outcome.
    let running = store.claim_deliveries(20, 1_000, 1).await.unwrap().remove(0).delivery;
    store.delete_webhook(w.id, 30).await.unwrap();
    let page = store.list_deliveries(w.id, None, None, 10).await.unwrap();
    let statuses: Vec<(&str, Option<&str>)> =
        page.items.iter().map(|d| (d.status.as_str(), d.last_error.as_deref())).collect();
    assert!(statuses.contains(&("dead", Some("webhook deleted"))), "{statuses:?}");
    assert!(statuses.contains(&("delivering", None)), "{statuses:?}");
    assert!(store.webhook(w.id).await.unwrap().deleted_at.is_some());
    assert!(store.claim_deliveries(40, 1_000, 10).await.unwrap().is_empty());
    let dead = page.items.iter().find(|d| d.status == "dead").unwrap();
    assert!(matches!(store.requeue_delivery(w.id, dead.id, 50).await, Err(StoreError::Conflict(_))));
    assert!(store.delivery_succeeded(running.id, running.attempts, 200, 60).await.unwrap());
    // Nothing new for a deleted hook.
    let out = store.ingest(&batch("d3", 0, 1, 1), 70).await.unwrap();
    assert_eq!(out.webhook_deliveries, 0);
}
