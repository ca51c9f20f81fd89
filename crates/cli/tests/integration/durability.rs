//! Durability of the ingest path against the real binary: a batch acknowledged with 200 is
//! stored exactly once, whether the server stops on SIGTERM or dies on SIGKILL.
//!
//! Clients post unique batches over plain HTTP/1.1 and remember what became of each. A batch
//! that was sent but not answered (the server went away first) may or may not be stored, but
//! the server writes one request in one transaction, so it must be stored whole or not at
//! all. `ANOMALYD_CRASH_ROUNDS` (default 20) and `ANOMALYD_CRASH_SEED` tune the crash test.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::common::Server;

const SAMPLES_PER_BATCH: usize = 200;
const N: u64 = SAMPLES_PER_BATCH as u64;
/// Sample times start here (2023-11-14), one second apart per batch.
const T0: i64 = 1_700_000_000_000;

/// A server on `data` without keys, ready within 20 s.
fn start_server(data: &Path, log: PathBuf) -> Server {
    let flags = |c: &mut Command| {
        c.arg("--insecure-no-auth").arg("--data-dir").arg(data);
    };
    Server::start(flags, log, Duration::from_secs(20))
}

impl Server {
    /// Sends SIGTERM and waits for the exit (a server still running after 30 s fails the test).
    fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.stderr());
            }
            assert!(Instant::now() < deadline, "still running 30 s after SIGTERM:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no chance to finish anything.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// One request of client `client`: `SAMPLES_PER_BATCH` of its devices, all at the time of the
/// test-wide sequence number `seq`, so no two batches share a (device, ts) and each stored
/// row names the batch it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Batch {
    client: usize,
    seq: u64,
}

impl Batch {
    fn ts(self) -> i64 {
        T0 + 1000 * self.seq as i64
    }

    fn body(self) -> String {
        let mut out = String::with_capacity(100 * SAMPLES_PER_BATCH);
        out.push('[');
        for j in 0..SAMPLES_PER_BATCH {
            if j > 0 {
                out.push(',');
            }
            let x = (self.seq as usize * 31 + j * 7) % 1000;
            out.push_str(&format!(
                r#"{{"device_id":"c{}-d{j:03}","ts":{},"metrics":{{"cpu_pct":{}.5,"mem_pct":{},"temp_c":{}}}}}"#,
                self.client,
                self.ts(),
                x % 100,
                (x * 3) % 100,
                40 + x % 30,
            ));
        }
        out.push(']');
        out
    }

    /// The batch of stored rows with device prefix `client` (`c7` of `c7-d012`) and time `ts`.
    fn of_group(client: &str, ts: i64) -> Batch {
        let c = client.strip_prefix('c').and_then(|c| c.parse().ok());
        let seq = u64::try_from(ts - T0).ok().filter(|d| d % 1000 == 0).map(|d| d / 1000);
        match (c, seq) {
            (Some(client), Some(seq)) => Batch { client, seq },
            _ => panic!("rows of no test batch: device prefix `{client}`, ts {ts}"),
        }
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// 200: durable. (accepted, duplicates) from the body.
    Acked(u64, u64),
    /// Answered with another status.
    Refused(u16),
    /// Nothing listened: the request never left.
    NotSent,
    /// Sent, but no complete answer came back.
    Lost,
}

/// Posts `batch` on a fresh connection and reads the whole answer.
fn post(address: &str, batch: Batch) -> Reply {
    let Ok(mut s) = TcpStream::connect(address) else { return Reply::NotSent };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = batch.body();
    let request = format!(
        "POST /api/v1/telemetry HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(request.as_bytes()).is_err() {
        return Reply::Lost;
    }
    let mut answer = Vec::new();
    // A reset after a complete answer still leaves the answer: judge by what arrived.
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let Some(status) = answer.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)?.parse::<u16>().ok()) else {
        return Reply::Lost;
    };
    if status != 200 {
        return Reply::Refused(status);
    }
    let Some((_, json)) = answer.split_once("\r\n\r\n") else { return Reply::Lost };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return Reply::Lost };
    match (v["accepted"].as_u64(), v["duplicates"].as_u64()) {
        (Some(a), Some(d)) => Reply::Acked(a, d),
        _ => panic!("a 200 without counts: {answer}"),
    }
}

/// Posts fresh batches until `stop` is set; returns every batch with its reply, in order.
fn client(address: &str, client: usize, seq: &AtomicU64, stop: &AtomicBool) -> Vec<(Batch, Reply)> {
    let mut log = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let batch = Batch { client, seq: seq.fetch_add(1, Ordering::Relaxed) };
        let reply = post(address, batch);
        if reply == Reply::NotSent {
            std::thread::sleep(Duration::from_millis(2));
        }
        log.push((batch, reply));
    }
    log
}

/// Sets the flag when dropped, so client threads stop even when the thread driving the
/// server panics (a scope waits for its threads before it unwinds).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `clients` threads posting to `address` while `drive` decides when the server goes
/// away; returns what `drive` returns and every client's log.
fn under_load<T>(
    address: &str,
    clients: usize,
    seq: &AtomicU64,
    drive: impl FnOnce() -> T,
) -> (T, Vec<(Batch, Reply)>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let stop = &stop;
                scope.spawn(move || client(address, c, seq, stop))
            })
            .collect();
        let result = {
            let _stop = StopOnDrop(&stop);
            drive()
        };
        let logs = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        (result, logs)
    })
}

/// What the clients know, across server lifetimes.
#[derive(Default)]
struct Ledger {
    acked: HashSet<Batch>,
    /// Batches sent without an acknowledgement: stored whole or not at all.
    unknown: HashSet<Batch>,
    /// The acknowledged batch with the highest sequence number: the last to commit, roughly.
    latest_acked: Option<Batch>,
    refused: HashMap<u16, usize>,
    not_sent: usize,
    lost: usize,
}

impl Ledger {
    /// Records the reply to a batch sent for the first time.
    fn record(&mut self, batch: Batch, reply: Reply) {
        match reply {
            Reply::Acked(accepted, duplicates) => {
                assert_eq!((accepted, duplicates), (N, 0), "a fresh batch {batch:?}");
                self.ack(batch);
            }
            Reply::Refused(status) => {
                *self.refused.entry(status).or_default() += 1;
                // A request that timed out (408) may still be committed after its answer.
                self.unknown.insert(batch);
            }
            Reply::NotSent => self.not_sent += 1,
            Reply::Lost => {
                self.lost += 1;
                self.unknown.insert(batch);
            }
        }
    }

    fn ack(&mut self, batch: Batch) {
        self.unknown.remove(&batch);
        self.acked.insert(batch);
        if self.latest_acked.is_none_or(|b| b.seq < batch.seq) {
            self.latest_acked = Some(batch);
        }
    }

    /// Checks the database against what was acknowledged; returns the unknown batches found
    /// stored.
    fn verify(&self, stored: &HashMap<Batch, u64>) -> HashSet<Batch> {
        let mut missing: Vec<_> =
            self.acked.iter().filter(|b| stored.get(b).copied().unwrap_or(0) != N).collect();
        missing.sort_by_key(|b| b.seq);
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged batches are not stored whole, e.g. {:?} with {} of {N} samples",
            missing.len(),
            self.acked.len(),
            missing[0],
            stored.get(missing[0]).copied().unwrap_or(0),
        );
        let mut found_unknown = HashSet::new();
        for (batch, &n) in stored {
            assert_eq!(n, N, "batch {batch:?} is stored in part: {n} of {N} samples");
            if !self.acked.contains(batch) {
                assert!(self.unknown.contains(batch), "batch {batch:?} is stored but was never sent");
                found_unknown.insert(*batch);
            }
        }
        let rows: u64 = stored.values().sum();
        let acked_rows = N * self.acked.len() as u64;
        assert!(
            rows >= acked_rows && rows <= acked_rows + N * self.unknown.len() as u64,
            "{rows} rows for {acked_rows} acknowledged samples and {} unacknowledged",
            N * self.unknown.len() as u64
        );
        found_unknown
    }

    /// Sends every unacknowledged batch again, as a client retrying would: the reply must
    /// count as duplicates exactly the samples found stored.
    fn retry_unknown(&mut self, address: &str, stored_before: &HashSet<Batch>) {
        let mut unknown: Vec<Batch> = self.unknown.iter().copied().collect();
        unknown.sort_by_key(|b| b.seq);
        for batch in unknown {
            let expected = if stored_before.contains(&batch) { (0, N) } else { (N, 0) };
            match post(address, batch) {
                Reply::Acked(a, d) => assert_eq!((a, d), expected, "retry of {batch:?}"),
                other => panic!("retry of {batch:?} on a fresh server: {other:?}"),
            }
            self.ack(batch);
        }
    }
}

/// How much of SQLite's own check to run before reading the rows.
#[derive(Clone, Copy)]
enum Check {
    /// `quick_check`: page and b-tree structure, what a torn write would break; linear in
    /// the file, cheap enough for every round of a long crash run.
    Quick,
    /// `integrity_check`: also that the indexes hold exactly the table's rows.
    Full,
}

/// Counts the stored samples of each batch and asserts that none is stored twice.
///
/// The rows are read from the table itself (`NOT INDEXED`), so a duplicate would show even if
/// the unique index that should prevent it were wrong; grouping in SQL keeps a round of a long
/// run to one pass over the table instead of a million rows through the driver.
fn stored(data: &Path, check: Check) -> HashMap<Batch, u64> {
    use sqlx::ConnectOptions;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(data.join("anomalyd.db"))
            .connect()
            .await
            .expect("the database opens");
        let pragma = match check {
            Check::Quick => "PRAGMA quick_check",
            Check::Full => "PRAGMA integrity_check",
        };
        let verdict: String = sqlx::query_scalar(pragma).fetch_one(&mut db).await.unwrap();
        assert_eq!(verdict, "ok", "{pragma}");
        let groups: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT substr(device_id, 1, instr(device_id, '-') - 1) AS client, ts,
                    COUNT(*), COUNT(DISTINCT device_id)
             FROM telemetry NOT INDEXED GROUP BY client, ts",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        let indexed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM telemetry INDEXED BY telemetry_time")
            .fetch_one(&mut db)
            .await
            .unwrap();
        // Every stored sample up to the move mark is in a run of its device (the ones above it
        // are listed in memory when the store opens, from exactly that mark).
        let unlisted: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (
                 SELECT device_id, ts FROM telemetry WHERE id <= (SELECT moved_through FROM telemetry_device_moves)
                 EXCEPT SELECT r.device_id, j.value FROM telemetry_device_runs r, json_each(r.times) j)",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        let mut per_batch = HashMap::with_capacity(groups.len());
        let mut rows = 0;
        for (client, ts, n, distinct) in groups {
            let batch = Batch::of_group(&client, ts);
            assert_eq!(n, distinct, "batch {batch:?}: {n} rows for {distinct} samples");
            per_batch.insert(batch, n as u64);
            rows += n;
        }
        assert_eq!(indexed, rows, "entries of the unique index vs rows of the table");
        assert_eq!(unlisted, 0, "moved samples missing from their device's runs");
        per_batch
    })
}

#[test]
fn sigterm_during_ingest_keeps_every_acknowledged_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_server(&data, dir.path().join("serve.log"));
    let address = server.address.clone();
    let seq = AtomicU64::new(0);
    let started = Instant::now();
    // The clients keep posting while the server drains, until it has exited.
    let ((status, err), log) = under_load(&address, 4, &seq, || {
        std::thread::sleep(Duration::from_millis(1500));
        server.terminate()
    });
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM; stderr:\n{err}");
    assert!(err.contains("anomalyd stopped"), "{err}");

    let mut ledger = Ledger::default();
    for (batch, reply) in log {
        ledger.record(batch, reply);
    }
    let stored = stored(&data, Check::Full);
    let answered_late = ledger.verify(&stored);
    eprintln!(
        "sigterm: {} batches ({} samples) acknowledged in {elapsed:.2?}; {} sent but unanswered, \
         refused {:?}, {} not sent (server gone); {} unanswered batches found stored",
        ledger.acked.len(),
        N * ledger.acked.len() as u64,
        ledger.lost,
        ledger.refused,
        ledger.not_sent,
        answered_late.len()
    );
    assert!(ledger.acked.len() > 10, "the clients got almost nothing through");
    // A graceful stop answers every request it commits.
    assert!(answered_late.is_empty(), "committed but never answered: {answered_late:?}");
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v} does not parse")),
        Err(_) => default,
    }
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_no_acknowledged_sample() {
    let rounds: usize = env_or("ANOMALYD_CRASH_ROUNDS", 20);
    let seed: u64 = env_or("ANOMALYD_CRASH_SEED", 0x5EED_C4A5);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seq = AtomicU64::new(0);
    let mut ledger = Ledger::default();
    let mut stored_unknown = HashSet::new();
    let started = Instant::now();
    for round in 0..rounds {
        let server = start_server(&data, dir.path().join(format!("serve-{round}.log")));
        ledger.retry_unknown(&server.address, &stored_unknown);
        // The batch acknowledged last committed just before the previous kill.
        let probe = if let Some(b) = ledger.latest_acked {
            b
        } else {
            let b = Batch { client: 99, seq: seq.fetch_add(1, Ordering::Relaxed) };
            ledger.record(b, post(&server.address, b));
            assert!(ledger.acked.contains(&b), "the first batch on a fresh server");
            b
        };
        assert_eq!(post(&server.address, probe), Reply::Acked(0, N), "{probe:?} sent again");

        let delay = Duration::from_millis(rng.random_range(50..=400));
        let (acked_before, lost_before) = (ledger.acked.len(), ledger.lost);
        let address = server.address.clone();
        let ((), log) = under_load(&address, 3, &seq, || {
            std::thread::sleep(delay);
            server.crash();
        });
        for (batch, reply) in log {
            ledger.record(batch, reply);
        }
        let stored = stored(&data, Check::Quick);
        stored_unknown = ledger.verify(&stored);
        eprintln!(
            "round {round:>3}: killed after {delay:>3.0?}: {:>3} batches acknowledged, {} unanswered \
             ({} of them stored); {} rows",
            ledger.acked.len() - acked_before,
            ledger.lost - lost_before,
            stored_unknown.len(),
            stored.values().sum::<u64>(),
        );
    }

    // A last life settles the unanswered batches, and a clean stop leaves exactly the
    // acknowledged samples.
    let server = start_server(&data, dir.path().join("serve-final.log"));
    ledger.retry_unknown(&server.address, &stored_unknown);
    let (status, err) = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM; stderr:\n{err}");
    let stored = stored(&data, Check::Full);
    assert!(ledger.unknown.is_empty() && ledger.verify(&stored).is_empty());
    let rows: u64 = stored.values().sum();
    assert_eq!(rows, N * ledger.acked.len() as u64);
    eprintln!(
        "crash: {rounds} rounds (seed {seed:#x}) in {:.2?}: {} batches ({rows} samples) acknowledged, \
         {} sent but unanswered at a kill, refused {:?}, {} not sent (server gone)",
        started.elapsed(),
        ledger.acked.len(),
        ledger.lost,
        ledger.refused,
        ledger.not_sent,
    );
    assert!(rounds == 0 || ledger.acked.len() > rounds, "the clients got almost nothing through");
}
