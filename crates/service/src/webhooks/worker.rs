//! The delivery worker: claims due outbox rows under a lease, POSTs each signed payload,
//! and records the outcome.
//!
//! It wakes when a commit queued deliveries, when an attempt it scheduled falls due, and
//! every `poll_interval` (for rows it did not schedule: leases of a crashed process, other
//! replicas, re-queued dead letters). At most `concurrency` attempts run at once.
//!
//! Retries: a 2xx delivers. A 4xx other than 408, 425 and 429 is a permanent refusal (the
//! same request will not succeed later): dead at once. Anything else (5xx, 408, 425, 429,
//! a timeout, a refused connection, a redirect) is retried after an exponential backoff
//! with equal jitter, `base·2^(n−1)` capped at `backoff_max`, of which the second half is
//! random; a `Retry-After` on 429 or 503 (seconds or an HTTP date) is honoured when longer,
//! up to `backoff_max`. After `max_attempts` attempts the delivery is dead, with its last
//! status and error kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anomalyd_store::{ClaimedDelivery, Store, StoreError};
use hmac::{Hmac, Mac};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;

use super::payload::build_payload;
use crate::now_ms;

/// Settings of webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// Time allowed for one attempt (connect, send, answer).
    pub timeout: Duration,
    /// Backoff before the second attempt; it doubles with each attempt.
    pub backoff_base: Duration,
    /// Longest wait between attempts, `Retry-After` included.
    pub backoff_max: Duration,
    /// How often the outbox is checked for work nobody announced.
    pub poll_interval: Duration,
    /// Attempts in flight at once (0: this process delivers nothing; the outbox still fills).
    pub concurrency: usize,
    /// Base URL of the dashboard, for the links in payloads (no trailing slash).
    pub public_url: String,
    /// Seed of the jitter; `None` seeds from the OS.
    pub jitter_seed: Option<u64>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_secs(5),
            concurrency: 4,
            public_url: "http://127.0.0.1:8080".into(),
            jitter_seed: None,
        }
    }
}

impl WebhookSettings {
    /// How long a claim holds a row: longer than any attempt can take, so a live attempt is
    /// never taken over.
    fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// The `X-Anomalyd-Signature` value of `body` sent at `timestamp` (Unix seconds):
/// `sha256=` and the hex HMAC-SHA256, keyed with the webhook's secret, of
/// `"{timestamp}.{body}"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date (a past date is 0).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Backoff after failed attempt `attempt` (1-based): `base·2^(attempt−1)` capped at `max`,
/// half of it fixed and half scaled by `unit` (a uniform draw in [0, 1)).
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX)).min(max);
    exp / 2 + (exp / 2).mul_f64(unit.clamp(0.0, 1.0))
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It was delivered.
    Delivered,
    /// Try again after this long.
    Retry(Duration),
    /// Give up.
    Dead,
}

/// The outcome of attempt `attempt` that got `status` (`None`: no answer) and maybe a
/// `Retry-After`; `unit` is the jitter draw.
pub fn verdict(
    status: Option<u16>,
    retry_after: Option<Duration>,
    attempt: u32,
    settings: &WebhookSettings,
    unit: f64,
) -> Verdict {
    if status.is_some_and(|s| (200..300).contains(&s)) {
        return Verdict::Delivered;
    }
    let permanent = status.is_some_and(|s| (400..500).contains(&s) && !matches!(s, 408 | 425 | 429));
    if permanent || attempt >= settings.max_attempts {
        return Verdict::Dead;
    }
    let mut delay = backoff(attempt, settings.backoff_base, settings.backoff_max, unit);
    if matches!(status, Some(429 | 503))
        && let Some(wait) = retry_after
    {
        delay = delay.max(wait.min(settings.backoff_max));
    }
    Verdict::Retry(delay)
}

/// Counts an attempt's outcome for `/metrics`.
fn count(outcome: &'static str) {
    metrics::counter!("anomalyd_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

/// Handle on the background worker.
pub struct WebhookWorker {
    wake: Arc<Notify>,
    stop: Mutex<Option<oneshot::Sender<Duration>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WebhookWorker {
    /// Starts the worker on the current tokio runtime.
    pub fn start(store: Store, settings: WebhookSettings) -> Self {
        for outcome in ["delivered", "retry", "dead"] {
            metrics::counter!("anomalyd_webhook_deliveries_total", "outcome" => outcome).increment(0);
        }
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel();
        let rng = match settings.jitter_seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect is a failed attempt: following it would send the alert (and its
            // signature) somewhere nobody registered.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("anomalyd/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
            .build()
            .expect("the TLS backend initialises");
        let runner = Arc::new(Runner { store, settings, client, rng: Mutex::new(rng) });
        let task = tokio::spawn(runner.run(wake.clone(), stopped));
        Self { wake, stop: Mutex::new(Some(stop)), task: Mutex::new(Some(task)) }
    }

    /// What the ingest writer notifies after a commit that queued deliveries.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Looks at the outbox now (e.g. after a dead letter was queued again).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming, lets attempts in flight finish for up to `grace`, then gives the
    /// unfinished ones back to the outbox (pending, the attempt not counted) so the next
    /// start sends them. Returns once the worker has stopped; later calls return at once.
    pub async fn shutdown(&self, grace: Duration) {
        if let Some(stop) = self.stop.lock().expect("stop lock").take() {
            let _ = stop.send(grace);
        }
        let task = self.task.lock().expect("task lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

struct Runner {
    store: Store,
    settings: WebhookSettings,
    client: reqwest::Client,
    rng: Mutex<SmallRng>,
}

impl Runner {
    async fn run(self: Arc<Self>, wake: Arc<Notify>, mut stop: oneshot::Receiver<Duration>) {
        let mut in_flight: JoinSet<Option<i64>> = JoinSet::new();
        // (delivery, attempt) of each running task, to give back on shutdown.
        let mut leases: HashMap<tokio::task::Id, (i64, i64)> = HashMap::new();
        let mut next_due: Option<i64> = None;
        let lease_ms = self.settings.lease().as_millis() as i64;
        let grace = loop {
            let free = self.settings.concurrency.saturating_sub(in_flight.len());
            if free > 0 {
                let now = now_ms();
                if next_due.is_some_and(|t| t <= now) {
                    next_due = None;
                }
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match self.store.claim_deliveries(now, now + lease_ms, limit).await {
                    Ok(claims) => {
                        for c in claims {
                            let lease = (c.delivery.id, c.delivery.attempts);
                            let handle = in_flight.spawn(self.clone().attempt(c));
                            leases.insert(handle.id(), lease);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook outbox: claim failed"),
                }
            }
            let wait = next_due
                .map(|t| Duration::from_millis(u64::try_from(t - now_ms()).unwrap_or(0)))
                .map_or(self.settings.poll_interval, |d| d.min(self.settings.poll_interval));
            tokio::select! {
                grace = &mut stop => break grace.unwrap_or(Duration::ZERO),
                () = wake.notified() => {}
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    match done {
                        Ok((id, retry_at)) => {
                            leases.remove(&id);
                            if let Some(t) = retry_at {
                                next_due = Some(next_due.map_or(t, |n| n.min(t)));
                            }
                        }
                        Err(e) => {
                            // A panicked attempt: its lease runs out and the row is due again.
                            leases.remove(&e.id());
                            tracing::error!(error = %e, "webhook attempt failed");
                        }
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        };
        self.drain(in_flight, leases, grace).await;
    }

    /// Waits up to `grace` for attempts in flight, then aborts the rest and releases their
    /// rows.
    async fn drain(
        &self,
        mut in_flight: JoinSet<Option<i64>>,
        mut leases: HashMap<tokio::task::Id, (i64, i64)>,
        grace: Duration,
    ) {
        let deadline = Instant::now() + grace;
        while !in_flight.is_empty() {
            match tokio::time::timeout_at(deadline.into(), in_flight.join_next_with_id()).await {
                Ok(Some(Ok((id, _)))) => {
                    leases.remove(&id);
                }
                Ok(Some(Err(e))) if !e.is_cancelled() => {
                    leases.remove(&e.id());
                }
                Ok(_) => {}
                Err(_) => {
                    in_flight.abort_all();
                    while in_flight.join_next().await.is_some() {}
                    break;
                }
            }
        }
        let now = now_ms();
        for (delivery, attempt) in leases.into_values() {
            if let Err(e) = self.store.release_delivery(delivery, attempt, now).await {
                tracing::warn!(error = %e, delivery, "webhook outbox: could not release a lease; it expires instead");
            }
        }
    }

    fn jitter(&self) -> f64 {
        self.rng.lock().expect("rng lock").random::<f64>()
    }

    /// One attempt; returns when the delivery is due again, if it is to be retried.
    async fn attempt(self: Arc<Self>, c: ClaimedDelivery) -> Option<i64> {
        let d = &c.delivery;
        let attempt = u32::try_from(d.attempts).unwrap_or(u32::MAX);
        if c.webhook.deleted_at.is_some() {
            return self.give_up(d.id, d.attempts, "webhook deleted").await;
        }
        if attempt > self.settings.max_attempts {
            let error = format!(
                "no attempts left: attempt {} of {} was cut short (its lease ran out)",
                attempt - 1,
                self.settings.max_attempts
            );
            return self.give_up(d.id, d.attempts, &error).await;
        }
        let body = match &d.payload {
            Some(p) => p.clone(),
            None => match self.first_payload(&c).await {
                Ok(p) => p,
                Err(StoreError::NotFound { what, id }) => {
                    return self.give_up(d.id, d.attempts, &format!("{what} {id} is no longer stored")).await;
                }
                Err(e) => {
                    // The lease runs out and the attempt is made again.
                    tracing::warn!(error = %e, delivery = d.id, "webhook payload could not be built");
                    return None;
                }
            },
        };
        let timestamp = now_ms() / 1000;
        let sent = self
            .client
            .post(&c.webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &d.idempotency_key)
            .header("X-Anomalyd-Delivery", d.id.to_string())
            .header("X-Anomalyd-Event", &d.event)
            .header("X-Anomalyd-Timestamp", timestamp.to_string())
            .header("X-Anomalyd-Signature", signature(&c.webhook.secret, timestamp, body.as_bytes()))
            .body(body)
            .send()
            .await;
        let (status, retry_after, error) = match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let error = if r.status().is_success() { String::new() } else { answer_error(r).await };
                (Some(status), retry_after, error)
            }
            Err(e) => (None, None, request_error(&e, self.settings.timeout)),
        };
        let now = now_ms();
        let result = match verdict(status, retry_after, attempt, &self.settings, self.jitter()) {
            Verdict::Delivered => self
                .store
                .delivery_succeeded(d.id, d.attempts, status.unwrap_or(200), now)
                .await
                .map(|held| (held, "delivered", None)),
            Verdict::Retry(delay) => {
                let at = now + delay.as_millis() as i64;
                self.store
                    .delivery_failed(d.id, d.attempts, status, &error, Some(at), now)
                    .await
                    .map(|held| (held, "retry", Some(at)))
            }
            Verdict::Dead => self
                .store
                .delivery_failed(d.id, d.attempts, status, &error, None, now)
                .await
                .map(|held| (held, "dead", None)),
        };
        match result {
            Ok((true, outcome, retry_at)) => {
                count(outcome);
                tracing::debug!(delivery = d.id, attempt, outcome, status, "webhook attempt");
                retry_at
            }
            // The lease ran out during the attempt and another attempt owns the row now.
            Ok((false, ..)) => None,
            Err(e) => {
                tracing::warn!(error = %e, delivery = d.id, "webhook outbox: update failed");
                None
            }
        }
    }

    /// Dead-letters a delivery without sending it.
    async fn give_up(&self, id: i64, attempt: i64, error: &str) -> Option<i64> {
        match self.store.delivery_failed(id, attempt, None, error, None, now_ms()).await {
            Ok(true) => count("dead"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, delivery = id, "webhook outbox: update failed"),
        }
        None
    }

    async fn first_payload(&self, c: &ClaimedDelivery) -> Result<String, StoreError> {
        let payload = build_payload(&self.store, &c.delivery, &self.settings.public_url).await?;
        self.store.set_delivery_payload(c.delivery.id, &payload).await
    }
}

/// `HTTP <status>` and the start of the answer's body.
async fn answer_error(mut r: reqwest::Response) -> String {
    const KEEP: usize = 200;
    let mut error = format!("HTTP {}", r.status().as_u16());
    let mut body = Vec::new();
    while body.len() < KEEP {
        match r.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(KEEP)]);
    let text = text.trim();
    if !text.is_empty() {
        error.push_str(": ");
        error.push_str(text);
    }
    error
}

/// Why no answer came.
fn request_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        format!("cannot connect: {}", source_chain(e))
    } else {
        source_chain(e)
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // The primitive against RFC 4231 test case 2, then the `{timestamp}.{body}` framing
        // (which no published vector covers) against the primitive.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(expected, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"12.what do ya want for nothing?");
        let framed: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(signature("Jefe", 12, b"what do ya want for nothing?"), format!("sha256={framed}"));
        let sig = signature("key", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert_ne!(sig, signature("key", 1_700_000_001, b"{\"a\":1}"), "the timestamp is signed");
        assert_ne!(sig, signature("other", 1_700_000_000, b"{\"a\":1}"));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_is_capped() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for attempt in 1..=10u32 {
            let full = (base * 2u32.pow(attempt - 1)).min(max);
            assert_eq!(backoff(attempt, base, max, 0.0), full / 2);
            assert_eq!(backoff(attempt, base, max, 1.0), full);
            let mid = backoff(attempt, base, max, 0.5);
            assert!(mid > full / 2 && mid < full, "{attempt}: {mid:?}");
        }
        assert_eq!(backoff(200, base, max, 1.0), max, "no overflow on huge attempt numbers");
    }

    #[test]
    fn verdicts() {
        let s = WebhookSettings {
            max_attempts: 4,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(30),
            ..Default::default()
        };
        assert_eq!(verdict(Some(200), None, 1, &s, 0.5), Verdict::Delivered);
        assert_eq!(verdict(Some(204), None, 4, &s, 0.5), Verdict::Delivered);
        assert_eq!(verdict(Some(500), None, 1, &s, 1.0), Verdict::Retry(Duration::from_secs(2)));
        assert_eq!(verdict(None, None, 2, &s, 1.0), Verdict::Retry(Duration::from_secs(4)));
        assert_eq!(verdict(Some(500), None, 4, &s, 0.5), Verdict::Dead, "attempts used up");
        assert_eq!(verdict(Some(404), None, 1, &s, 0.5), Verdict::Dead, "a permanent refusal");
        for retryable in [408, 425, 429, 502] {
            assert!(matches!(verdict(Some(retryable), None, 1, &s, 0.5), Verdict::Retry(_)), "{retryable}");
        }
        // Retry-After wins when longer, on 429 and 503 only, and never past the cap.
        let ten = Some(Duration::from_secs(10));
        assert_eq!(verdict(Some(429), ten, 1, &s, 0.0), Verdict::Retry(Duration::from_secs(10)));
        assert_eq!(verdict(Some(503), ten, 1, &s, 0.0), Verdict::Retry(Duration::from_secs(10)));
        assert_eq!(verdict(Some(500), ten, 1, &s, 0.0), Verdict::Retry(Duration::from_secs(1)));
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(verdict(Some(429), hour, 1, &s, 0.0), Verdict::Retry(Duration::from_secs(30)));
        let short = Some(Duration::from_millis(10));
        assert_eq!(verdict(Some(429), short, 3, &s, 1.0), Verdict::Retry(Duration::from_secs(8)));
    }
}
