//! CPU, memory and ingest rate, measured by a background task and served from a cache, so
//! no request ever waits for a measurement (the seed system blocked on a one-second CPU
//! sample inside its health check).

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};
use utoipa::ToSchema;

use crate::pipeline::Pipeline;

/// The latest measurement. Percentages are `f64` although sysinfo measures `f32`: the JSON
/// has always carried the widened value's digits.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SystemStatus {
    /// Machine CPU use, percent of all cores.
    pub cpu_pct: f64,
    /// This process's CPU use, percent of one core.
    pub process_cpu_pct: f64,
    /// This process's resident memory, bytes.
    pub process_rss_bytes: u64,
    /// Machine memory in use, bytes.
    pub memory_used_bytes: u64,
    /// Machine memory, bytes.
    pub memory_total_bytes: u64,
    /// Samples stored per second over the last interval.
    pub ingest_samples_per_sec: f64,
    /// Seconds since the process started serving.
    pub uptime_secs: u64,
    /// Unix ms of the measurement (0 before the first).
    pub measured_at: i64,
}

/// Cache of the latest [`SystemStatus`].
#[derive(Debug, Default)]
pub struct SystemMonitor {
    latest: RwLock<SystemStatus>,
}

impl SystemMonitor {
    /// The cached measurement.
    pub fn latest(&self) -> SystemStatus {
        self.latest.read().expect("status lock").clone()
    }

    /// Starts sampling every `every` until the pipeline is dropped.
    pub fn start(self: &Arc<Self>, pipeline: Weak<Pipeline>, every: Duration) {
        let monitor = Arc::downgrade(self);
        tokio::spawn(async move {
            let started = Instant::now();
            let pid = Pid::from_u32(std::process::id());
            let mut sys = System::new_with_specifics(RefreshKind::nothing());
            let mut last_stored = 0u64;
            let mut last_at = Instant::now();
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let (Some(monitor), Some(pipeline)) = (monitor.upgrade(), pipeline.upgrade()) else { break };
                sys.refresh_cpu_usage();
                sys.refresh_memory();
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_cpu().with_memory(),
                );
                let stored = pipeline.counters().samples_stored.load(Ordering::Relaxed);
                let secs = last_at.elapsed().as_secs_f64().max(1e-3);
                let process = sys.process(pid);
                let status = SystemStatus {
                    cpu_pct: f64::from(sys.global_cpu_usage()),
                    process_cpu_pct: process.map_or(0.0, |p| f64::from(p.cpu_usage())),
                    process_rss_bytes: process.map_or(0, |p| p.memory()),
                    memory_used_bytes: sys.used_memory(),
                    memory_total_bytes: sys.total_memory(),
                    ingest_samples_per_sec: (stored - last_stored) as f64 / secs,
                    uptime_secs: started.elapsed().as_secs(),
                    measured_at: crate::now_ms(),
                };
                last_stored = stored;
                last_at = Instant::now();
                *monitor.latest.write().expect("status lock") = status;
            }
        });
    }
}
