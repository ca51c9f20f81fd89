//! The ingest pipeline: a bounded queue in front of one worker that owns every device's
//! streaming state.
//!
//! Requests are admitted only while the queue has room for their samples (a semaphore
//! counts queued samples, so memory is bounded whatever the request sizes); otherwise the
//! caller gets 503 with `Retry-After`. The worker takes every request waiting, up to a batch
//! limit, updates per-device features, scores the rows with the active bundle, writes the
//! whole batch in one transaction and only then answers each request: an acknowledged
//! sample is durable. One worker means one writer, which is what SQLite wants, and it keeps a
//! device's windows in one place without locks.
//!
//! Samples held back by a device's re-order buffer are scored when the device sends again,
//! or by the worker's timer once they have waited `flush_after`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anomalyd_engine::fleet::{DeviceState, FeatureRow, FleetBundle, FleetConfig, FleetScore, Sample};
use anomalyd_store::{DedupPolicy, IngestBatch, NewAnomaly, Store, TelemetryRow};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::now_ms;

/// Per-device maps on the ingest path: looked up for every sample, so a fast hash.
type DeviceMap<V> = foldhash::HashMap<Arc<str>, V>;

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Most samples waiting in the queue.
    pub queue_samples: usize,
    /// Most samples the worker writes in one transaction.
    pub batch_samples: usize,
    /// Samples a device sends before the model may flag it (its windows are filling).
    pub warmup: usize,
    /// How long a held-back sample waits before the timer scores it.
    pub flush_after: Duration,
    /// Incident grouping.
    pub dedup: DedupPolicy,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            queue_samples: 100_000,
            batch_samples: 20_000,
            warmup: 24,
            flush_after: Duration::from_secs(2),
            dedup: DedupPolicy::default(),
        }
    }
}

/// The bundle that scores telemetry, with where it came from.
pub struct ActiveBundle {
    /// The bundle.
    pub bundle: FleetBundle,
    /// Version label (the model registry's, or `file` for one given on the command line).
    pub version: String,
    /// Id in the model registry, when it came from there.
    pub model_id: Option<i64>,
}

/// A device's latest feature row, for the device page.
#[derive(Debug, Clone)]
pub struct CurrentFeatures {
    /// Sample time, Unix ms.
    pub ts: i64,
    /// Values in the bundle's feature order.
    pub values: Vec<f32>,
    /// Bundle version that computed them.
    pub version: String,
}

/// What one request's samples did.
#[derive(Debug, Clone, Default)]
pub struct IngestReply {
    /// Samples newly stored.
    pub accepted: u64,
    /// Samples already stored.
    pub duplicates: u64,
    /// Anomalies found among the request's rows.
    pub anomalies: u64,
    /// Samples stored but not scored: (index in request, reason).
    pub refused: Vec<(usize, String)>,
}

impl IngestReply {
    /// The JSON body of `POST /api/v1/telemetry`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(IngestSummary::from(self)).expect("plain numbers and strings serialise")
    }
}

/// What one request's samples did, as `POST /api/v1/telemetry` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestSummary {
    /// Samples newly stored.
    pub accepted: u64,
    /// Samples skipped as already stored for their (device, time).
    pub duplicates: u64,
    /// Anomalies found among the rows this request completed.
    pub anomalies: u64,
    /// Samples stored but not scored.
    pub refused: Vec<RefusedSample>,
}

/// A sample stored but not scored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefusedSample {
    /// Position in the request.
    pub index: usize,
    /// Why it was not scored (e.g. out of order beyond the re-order tolerance).
    pub reason: String,
}

impl From<&IngestReply> for IngestSummary {
    fn from(r: &IngestReply) -> Self {
        Self {
            accepted: r.accepted,
            duplicates: r.duplicates,
            anomalies: r.anomalies,
            refused: r
                .refused
                .iter()
                .map(|(index, reason)| RefusedSample { index: *index, reason: reason.clone() })
                .collect(),
        }
    }
}

/// Counters read by `/metrics` and the dashboard.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// Samples stored.
    pub samples_stored: AtomicU64,
    /// Samples skipped as duplicates.
    pub samples_duplicate: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected_full: AtomicU64,
    /// Anomalies stored.
    pub anomalies: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
}

struct Job {
    samples: Vec<Sample>,
    _permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<IngestReply, ApiError>>,
}

/// State shared by the handlers and the worker.
struct Shared {
    bundle: RwLock<Option<Arc<ActiveBundle>>>,
    current: RwLock<DeviceMap<CurrentFeatures>>,
    counters: PipelineCounters,
}

/// What the worker receives: work, or the order to finish.
enum Msg {
    Job(Job),
    /// Stop taking requests, score what re-order buffers hold, commit everything, answer.
    Drain(oneshot::Sender<()>),
}

/// Handle on the pipeline; cheap to share behind an `Arc`.
pub struct Pipeline {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Msg>,
    permits: Arc<Semaphore>,
    settings: PipelineSettings,
}

impl Pipeline {
    /// Starts the worker on the current tokio runtime. `outbox` is notified after each
    /// commit that queued webhook deliveries.
    pub fn start(
        store: Store,
        bundle: Option<ActiveBundle>,
        settings: PipelineSettings,
        outbox: Arc<Notify>,
    ) -> Self {
        let shared = Arc::new(Shared {
            bundle: RwLock::new(bundle.map(Arc::new)),
            current: RwLock::new(DeviceMap::default()),
            counters: PipelineCounters::default(),
        });
        let (queue, rx) = mpsc::unbounded_channel();
        let worker = Worker {
            store,
            shared: shared.clone(),
            settings: settings.clone(),
            devices: DeviceMap::default(),
            states_of: None,
            outbox,
        };
        // Features and scoring are CPU work in ~10 ms slices: on their own thread they never
        // hold up the runtime's workers, which parse the next requests meanwhile. The writer
        // stays on the runtime (SQLite has its own thread and the task mostly waits on it).
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("anomalyd-pipeline".into())
            .spawn(move || {
                let local = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a current-thread runtime for the pipeline");
                // Scoring runs on this thread, not on the global rayon pool. Every batch is
                // only a millisecond of forest work: handing it to the pool and waiting cost
                // more than it saved, the pool's threads spun between batches, and the HTTP
                // and SQLite threads already keep the other core busy.
                let here = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .use_current_thread()
                    .build()
                    .expect("a one-thread rayon pool for the pipeline");
                here.install(|| local.block_on(worker.run(rx, runtime)));
            })
            .expect("spawning the pipeline thread");
        Self { shared, queue, permits: Arc::new(Semaphore::new(settings.queue_samples)), settings }
    }

    /// Queues validated samples and waits until they are durable. Refuses at once with 503
    /// when the queue has no room for them.
    pub async fn submit(&self, samples: Vec<Sample>) -> Result<IngestReply, ApiError> {
        if samples.is_empty() {
            return Ok(IngestReply::default());
        }
        let n = u32::try_from(samples.len()).unwrap_or(u32::MAX);
        let Ok(permit) = self.permits.clone().try_acquire_many_owned(n) else {
            self.shared.counters.rejected_full.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::unavailable(format!(
                "the ingest queue is full ({} samples waiting); retry shortly",
                self.queued()
            )));
        };
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Msg::Job(Job { samples, _permit: permit, reply }))
            .map_err(|_| ApiError::unavailable("the ingest pipeline is shutting down"))?;
        answer.await.map_err(|_| ApiError::internal())?
    }

    /// Finishes the pipeline for shutdown: requests already queued are committed and
    /// answered, later ones get 503, samples held in re-order buffers are scored, and the
    /// last transaction has committed when this returns. Safe to call more than once.
    pub async fn drain(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Msg::Drain(done)).is_ok() {
            // An error means the worker is already gone, which is what we wait for.
            let _ = finished.await;
        }
    }

    /// Samples waiting in the queue.
    pub fn queued(&self) -> usize {
        self.settings.queue_samples - self.permits.available_permits()
    }

    /// Capacity of the queue in samples.
    pub fn capacity(&self) -> usize {
        self.settings.queue_samples
    }

    /// The bundle scoring telemetry now.
    pub fn bundle(&self) -> Option<Arc<ActiveBundle>> {
        self.shared.bundle.read().expect("bundle lock").clone()
    }

    /// Replaces the active bundle. Requests in flight finish with the bundle they started
    /// with; the worker picks the new one up at its next batch.
    pub fn set_bundle(&self, bundle: ActiveBundle) {
        *self.shared.bundle.write().expect("bundle lock") = Some(Arc::new(bundle));
    }

    /// The device's latest features, if the worker has computed any.
    pub fn current_features(&self, device: &str) -> Option<CurrentFeatures> {
        self.shared.current.read().expect("features lock").get(device).cloned()
    }

    /// Counters.
    pub fn counters(&self) -> &PipelineCounters {
        &self.shared.counters
    }
}

struct DeviceSlot {
    state: DeviceState,
    seen: usize,
    last_push: Instant,
}

/// A request waiting for its batch to be durable: where to answer, its queue permit, and
/// the answer so far.
type Waiting = (oneshot::Sender<Result<IngestReply, ApiError>>, OwnedSemaphorePermit, IngestReply);

/// A batch ready to be written, with the requests waiting for it.
struct WriteJob {
    batch: IngestBatch,
    waiting: Vec<Waiting>,
}

struct Worker {
    store: Store,
    shared: Arc<Shared>,
    settings: PipelineSettings,
    devices: DeviceMap<DeviceSlot>,
    /// The bundle the device states were built for: a bundle with another configuration
    /// computes other features, so the states start over when it changes.
    states_of: Option<Arc<ActiveBundle>>,
    /// Woken after commits that queued webhook deliveries.
    outbox: Arc<Notify>,
}

/// Scored batches that may wait for the writer.
const WRITE_QUEUE: usize = 16;
/// The writer merges waiting batches up to this many samples per transaction.
const MERGE_SAMPLES: usize = 50_000;
/// Samples stored between two moves of the per-device sample lists into their runs
/// (`Store::compact_device_index`). A move writes each device's page of runs once, whatever
/// its number of samples: on a database of 5 million samples from 10 000 devices a move took
/// 0.33-0.48 s whether it held 400 000 or 800 000 samples. So larger moves cost less per
/// sample, against a list in memory of 8 bytes per sample (plus a `Vec` per device) and a
/// longer rebuild of that list when the server starts. Ingest A/B on a fresh database, 8 s:
/// moves every 100 000 samples 209k-232k samples/s, 200 000 219k-241k, 400 000 247k-282k;
/// on a copy of the 5-million-sample database, 10 s: 400 000 198k-228k, 800 000 215k-231k.
const COMPACT_SAMPLES: u64 = 800_000;

impl WriteJob {
    fn absorb(&mut self, other: WriteJob) {
        let b = &mut self.batch;
        // A batch without requests (anomalies of held-back samples) adds no telemetry.
        if b.requests.is_empty() && !b.telemetry.is_empty() {
            b.requests.push(b.telemetry.len());
        }
        if other.batch.requests.is_empty() && !other.batch.telemetry.is_empty() {
            b.requests.push(other.batch.telemetry.len());
        } else {
            b.requests.extend(other.batch.requests);
        }
        b.telemetry.extend(other.batch.telemetry);
        b.anomalies.extend(other.batch.anomalies);
        self.waiting.extend(other.waiting);
    }
}

/// A feature row waiting to be scored, with the request it belongs to.
struct Pending {
    row: FeatureRow,
    may_flag: bool,
    request: Option<usize>,
}

impl Worker {
    /// Two stages: this task computes features and scores the next batches while the writer
    /// task commits the previous ones (SQLite runs on its own thread), so CPU and disk
    /// overlap. Memory stays bounded by the queue's permits, which a request holds until it
    /// is answered.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, runtime: tokio::runtime::Handle) {
        let (to_writer, writer_rx) = mpsc::channel::<WriteJob>(WRITE_QUEUE);
        let writer = runtime.spawn(write_loop(
            self.store.clone(),
            self.shared.clone(),
            self.outbox.clone(),
            writer_rx,
        ));
        let mut tick = tokio::time::interval(self.settings.flush_after.max(Duration::from_millis(50)) / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drained: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            let write = tokio::select! {
                msg = rx.recv() => {
                    let mut jobs = Vec::new();
                    let mut queued = 0;
                    let mut next = msg;
                    // Take what is waiting, up to a batch; a drain order closes the queue
                    // but the jobs sent before it still go into this batch.
                    loop {
                        match next {
                            None => break,
                            Some(Msg::Job(j)) => {
                                queued += j.samples.len();
                                jobs.push(j);
                            }
                            Some(Msg::Drain(done)) => {
                                rx.close();
                                drained.push(done);
                            }
                        }
                        if queued >= self.settings.batch_samples {
                            break;
                        }
                        next = rx.try_recv().ok();
                    }
                    if jobs.is_empty() && rx.is_closed() && rx.is_empty() {
                        break;
                    }
                    (!jobs.is_empty()).then(|| self.process(jobs))
                }
                _ = tick.tick() => self.flush_stale(Some(self.settings.flush_after)),
            };
            if let Some(write) = write
                && to_writer.send(write).await.is_err()
            {
                break;
            }
        }
        // Scores whatever the re-order buffers still hold, so no sample stays unscored.
        if let Some(write) = self.flush_stale(None) {
            let _ = to_writer.send(write).await;
        }
        drop(to_writer);
        let _ = writer.await;
        for done in drained {
            let _ = done.send(());
        }
    }

    fn active_bundle(&mut self) -> Option<Arc<ActiveBundle>> {
        let bundle = self.shared.bundle.read().expect("bundle lock").clone();
        let same_config = match (&bundle, &self.states_of) {
            (Some(a), Some(b)) => a.bundle.config.source == b.bundle.config.source,
            (None, None) => true,
            _ => false,
        };
        if !same_config {
            self.devices.clear();
        }
        self.states_of.clone_from(&bundle);
        bundle
    }

    fn process(&mut self, jobs: Vec<Job>) -> WriteJob {
        let bundle = self.active_bundle();
        let mut batch = IngestBatch { dedup: self.settings.dedup, ..Default::default() };
        let mut waiting = Vec::with_capacity(jobs.len());
        let mut pending: Vec<Pending> = Vec::new();
        let now = Instant::now();
        // Feature rows of one sample; reused, as most samples yield one row or none.
        let mut rows = Vec::new();
        for (r, job) in jobs.into_iter().enumerate() {
            let mut reply = IngestReply::default();
            batch.requests.push(job.samples.len());
            for (i, s) in job.samples.into_iter().enumerate() {
                batch.telemetry.push(telemetry_row(&s));
                let Some(active) = &bundle else { continue };
                let slot = self.devices.entry(s.device_id.clone()).or_insert_with(|| DeviceSlot {
                    state: DeviceState::new(&active.bundle.config),
                    seen: 0,
                    last_push: now,
                });
                slot.last_push = now;
                if let Err(reason) = slot.state.push(&active.bundle.config, s, &mut rows) {
                    reply.refused.push((i, reason.to_string()));
                }
                for row in rows.drain(..) {
                    slot.seen += 1;
                    pending.push(Pending {
                        row,
                        may_flag: slot.seen > self.settings.warmup,
                        request: Some(r),
                    });
                }
            }
            waiting.push((job.reply, job._permit, reply));
        }
        if let Some(active) = &bundle {
            for (request, n) in score_pending(active, pending, &self.shared, &mut batch.anomalies) {
                waiting[request].2.anomalies += n;
            }
        }
        crate::telemetry_metrics::record_inference("features+forest", batch.telemetry.len(), now.elapsed());
        WriteJob { batch, waiting }
    }

    /// Scores samples that have waited in a re-order buffer longer than `older_than`
    /// (all of them with `None`).
    fn flush_stale(&mut self, older_than: Option<Duration>) -> Option<WriteJob> {
        let active = self.active_bundle()?;
        let mut pending = Vec::new();
        for slot in self.devices.values_mut() {
            if slot.state.pending() == 0 || older_than.is_some_and(|age| slot.last_push.elapsed() < age) {
                continue;
            }
            let mut rows = Vec::new();
            slot.state.flush(&active.bundle.config, &mut rows);
            for row in rows {
                slot.seen += 1;
                pending.push(Pending { row, may_flag: slot.seen > self.settings.warmup, request: None });
            }
        }
        if pending.is_empty() {
            return None;
        }
        let mut batch = IngestBatch { dedup: self.settings.dedup, ..Default::default() };
        score_pending(&active, pending, &self.shared, &mut batch.anomalies);
        (!batch.anomalies.is_empty()).then_some(WriteJob { batch, waiting: Vec::new() })
    }
}

/// The writer stage: one transaction per batch, then the replies.
async fn write_loop(
    store: Store,
    shared: Arc<Shared>,
    outbox: Arc<Notify>,
    mut rx: mpsc::Receiver<WriteJob>,
) {
    let mut since_compaction = 0;
    while let Some(mut job) = rx.recv().await {
        // Batches that queued up while the last commit ran go into one transaction: under
        // load the fsync and per-statement costs are shared by more samples.
        while job.batch.telemetry.len() < MERGE_SAMPLES {
            let Ok(more) = rx.try_recv() else { break };
            job.absorb(more);
        }
        let WriteJob { batch, waiting } = job;
        let started = Instant::now();
        let result = store.ingest(&batch, now_ms()).await;
        metrics::histogram!("anomalyd_ingest_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcome) => {
                let c = &shared.counters;
                c.samples_stored.fetch_add(outcome.inserted, Ordering::Relaxed);
                c.samples_duplicate.fetch_add(outcome.duplicates, Ordering::Relaxed);
                c.anomalies.fetch_add(outcome.anomalies, Ordering::Relaxed);
                c.batches.fetch_add(1, Ordering::Relaxed);
                if outcome.webhook_deliveries > 0 {
                    outbox.notify_one();
                }
                for ((sender, permit, mut reply), (ins, dup)) in
                    waiting.into_iter().zip(outcome.per_request.iter().copied())
                {
                    reply.accepted = ins;
                    reply.duplicates = dup;
                    drop(permit);
                    let _ = sender.send(Ok(reply));
                }
                // After the replies: no request waits for the move.
                since_compaction += outcome.inserted;
                if since_compaction >= COMPACT_SAMPLES {
                    since_compaction = 0;
                    let started = Instant::now();
                    match store.compact_device_index(COMPACT_SAMPLES).await {
                        Ok(_) => metrics::histogram!("anomalyd_device_index_compaction_seconds")
                            .record(started.elapsed().as_secs_f64()),
                        Err(e) => tracing::warn!("moving recent samples into the device index: {e}"),
                    }
                }
            }
            Err(e) => {
                let err = ApiError::from(e);
                for (sender, _, _) in waiting {
                    let _ = sender.send(Err(err.clone()));
                }
            }
        }
    }
}

/// A sample as stored, its metrics as a JSON object of the finite values. Written by hand,
/// not through serde_json's serializer: that made a writer call and a copy per key, colon
/// and number, and was about a fifth of the pipeline thread's time in a profile of ingest.
/// The text is the same as serde_json's (the same float formatter, the same escaping; see
/// the test).
fn telemetry_row(s: &Sample) -> TelemetryRow {
    let mut metrics = String::with_capacity(24 * s.values.len() + 2);
    let mut number = zmij::Buffer::new();
    metrics.push('{');
    for (name, v) in s.metrics().filter(|(_, v)| v.is_finite()) {
        if metrics.len() > 1 {
            metrics.push(',');
        }
        push_json_string(&mut metrics, name);
        metrics.push(':');
        metrics.push_str(number.format_finite(v));
    }
    metrics.push('}');
    TelemetryRow {
        device_id: s.device_id.to_string(),
        ts: s.ts.0,
        cohort: s.cohort.as_deref().map(str::to_string),
        labels: if s.labels.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&*s.labels).unwrap_or_default()
        },
        metrics,
    }
}

/// `text` as a JSON string. Metric names are plain words, copied as they are; anything JSON
/// must escape goes through serde_json.
fn push_json_string(out: &mut String, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("a string serialises"));
    }
}

/// Scores rows in one batch pass, explains only the anomalies, and records each device's
/// latest features. Returns (request, anomalies) counts for rows that belong to a request.
fn score_pending(
    active: &ActiveBundle,
    pending: Vec<Pending>,
    shared: &Shared,
    out: &mut Vec<NewAnomaly>,
) -> Vec<(usize, u64)> {
    if pending.is_empty() {
        return Vec::new();
    }
    let (rows, meta): (Vec<FeatureRow>, Vec<(bool, Option<usize>)>) =
        pending.into_iter().map(|p| (p.row, (p.may_flag, p.request))).unzip();
    let flags: Vec<bool> = meta.iter().map(|m| m.0).collect();
    let scores = active.bundle.score_rows(&rows, &flags);
    let mut counts: HashMap<usize, u64> = HashMap::new();
    {
        // Rows of a device come in time order: only its last one is current.
        let mut current = shared.current.write().expect("features lock");
        let mut done: foldhash::HashSet<&Arc<str>> = Default::default();
        for row in rows.iter().rev() {
            if !done.insert(&row.device_id) {
                continue;
            }
            // Updated in place: a known device's vector is reused, not reallocated.
            match current.get_mut(&row.device_id) {
                Some(c) => {
                    c.ts = row.ts.0;
                    c.values.clone_from(&row.values);
                    c.version.clone_from(&active.version);
                }
                None => {
                    current.insert(
                        row.device_id.clone(),
                        CurrentFeatures {
                            ts: row.ts.0,
                            values: row.values.clone(),
                            version: active.version.clone(),
                        },
                    );
                }
            }
        }
    }
    for ((&(may_flag, request), quick), row) in meta.iter().zip(&scores).zip(&rows) {
        if !quick.is_anomaly() {
            continue;
        }
        let cohort = row.cohort.as_deref();
        let score = active.bundle.score_one(cohort, &row.values, &row.rules_fired, may_flag, 3);
        out.push(new_anomaly(active, row, &score));
        if let Some(r) = request {
            *counts.entry(r).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

/// Feature values by name, missing ones (NaN) as null.
pub fn feature_values(config: &FleetConfig, values: &[f32]) -> serde_json::Map<String, Value> {
    config
        .features
        .iter()
        .zip(values)
        .map(|(f, v)| (f.name.clone(), if v.is_finite() { json!(v) } else { Value::Null }))
        .collect()
}

/// The stored form of an anomaly, with the signature that groups it into incidents: the
/// rules that fired and their metrics, or the model and the metrics behind its top two
/// features.
pub fn new_anomaly(active: &ActiveBundle, row: &FeatureRow, score: &FleetScore) -> NewAnomaly {
    let config = &active.bundle.config;
    let features = feature_values(config, &row.values);
    let explanation: Vec<Value> = score
        .explanation
        .iter()
        .map(|e| {
            json!({"feature": e.name, "weight": e.weight, "direction": e.direction.as_str(),
                   "value": e.value, "normal_low": e.normal_low, "normal_high": e.normal_high})
        })
        .collect();
    let metrics_of = |name: &str| -> Vec<String> {
        config
            .feature_index(name)
            .map(|i| config.feature_metrics(i))
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    // The evidence covers every metric behind the explanation and the rules.
    let mut evidence: Vec<String> = score.explanation.iter().flat_map(|e| metrics_of(&e.name)).collect();
    let rule_metrics: Vec<String> =
        row.rules_fired.iter().filter_map(|&k| config.rules[k].metric()).map(str::to_string).collect();
    evidence.extend(rule_metrics.iter().cloned());
    evidence.sort();
    evidence.dedup();
    // The signature names the problem. A rule names it precisely, so when rules fired they
    // and their metrics are the signature; otherwise it is the model with the metrics behind
    // its top two features. (The model's ranking of features shifts from hour to hour while
    // one fault goes on; folding it into a rule's signature would split one problem into
    // several incidents.)
    let mut rules: Vec<&str> = row.rules_fired.iter().map(|&k| config.rules[k].name()).collect();
    let (mut names, mut metrics): (Vec<String>, Vec<String>) = if rules.is_empty() {
        (vec!["model".into()], score.explanation.iter().take(2).flat_map(|e| metrics_of(&e.name)).collect())
    } else {
        rules.sort_unstable();
        (rules.iter().map(|r| r.to_string()).collect(), rule_metrics)
    };
    names.dedup();
    metrics.sort();
    metrics.dedup();
    NewAnomaly {
        device_id: row.device_id.to_string(),
        ts: row.ts.0,
        cohort: row.cohort.as_deref().map(str::to_string),
        anomaly_score: f64::from(score.anomaly_score),
        grade: f64::from(score.grade),
        severity: score.severity.as_str().to_string(),
        detectors: score.detectors.clone(),
        model_version: Some(format!("{}/{}", active.version, score.model)),
        features: Value::Object(features),
        explanation: Value::Array(explanation),
        signature: format!("{}|{}", names.join("+"), metrics.join(",")),
        evidence_metrics: evidence,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use anomalyd_engine::fleet::{MetricLayout, Sample, Timestamp};

    use super::telemetry_row;

    #[test]
    fn stored_metrics_are_the_text_serde_json_writes() {
        let names = ["battery_pct", "quote\"d", "tab\there", "back\\slash", "ctl\u{1}", "ünïcödé", "x"];
        let values = [60.0, -0.0, 5e-324, 1.797_693_134_862_315_7e308, 0.1, -71.25, f64::NAN];
        let layout = MetricLayout::new(names.iter().map(|n| Arc::from(*n)).collect()).unwrap();
        let sample =
            Sample::new(Arc::from("dev-1"), Timestamp(7), layout, values.to_vec(), None, Default::default())
                .unwrap();
        // The independent reference: serde_json's own map serialisation, missing value left out.
        let want: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(values)
            .filter(|(_, v)| v.is_finite())
            .map(|(n, v)| (n.to_string(), serde_json::Value::from(v)))
            .collect();
        let row = telemetry_row(&sample);
        assert_eq!(row.metrics, serde_json::to_string(&want).unwrap());
        assert_eq!((row.device_id.as_str(), row.ts, row.labels.as_str()), ("dev-1", 7, ""));
    }
}
