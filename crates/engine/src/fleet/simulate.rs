//! A deterministic fleet simulator: devices in cohorts, daily cycles and noise, and
//! injected, labelled faults. The same seed always gives the same fleet.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::sample::{Labels, MetricLayout, Sample, Timestamp};

/// Kinds of injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A few samples with extreme temperature and CPU.
    Spike,
    /// Temperature creeping up over a day and a half.
    Drift,
    /// The battery sensor repeats one value.
    Stuck,
    /// The battery empties within hours.
    BatteryDrain,
    /// Dozens of app crashes per hour.
    CrashStorm,
    /// The device stops reporting for hours.
    MissingHeartbeat,
}

impl FaultKind {
    /// All kinds, in the order devices get them.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Spike,
        FaultKind::Drift,
        FaultKind::Stuck,
        FaultKind::BatteryDrain,
        FaultKind::CrashStorm,
        FaultKind::MissingHeartbeat,
    ];

    /// snake_case name used in label files.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Spike => "spike",
            FaultKind::Drift => "drift",
            FaultKind::Stuck => "stuck",
            FaultKind::BatteryDrain => "battery_drain",
            FaultKind::CrashStorm => "crash_storm",
            FaultKind::MissingHeartbeat => "missing_heartbeat",
        }
    }

    /// Samples the fault lasts.
    fn duration(self) -> usize {
        match self {
            FaultKind::Spike => 3,
            FaultKind::Drift => 36,
            FaultKind::Stuck => 36,
            FaultKind::BatteryDrain => 6,
            FaultKind::CrashStorm => 8,
            FaultKind::MissingHeartbeat => 10,
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEpisode {
    /// Device affected.
    pub device_id: Arc<str>,
    /// What went wrong.
    pub kind: FaultKind,
    /// First affected sample time.
    pub start: Timestamp,
    /// Last affected sample time (for a missing heartbeat: the first sample after the gap).
    pub end: Timestamp,
}

/// Simulation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    /// Devices.
    pub devices: usize,
    /// Samples per device (one per `interval_secs`).
    pub samples: usize,
    /// Seed.
    pub seed: u64,
    /// Fraction of devices that get one fault episode.
    pub fault_rate: f64,
    /// Seconds between samples.
    pub interval_secs: i64,
    /// Time of the first sample (Unix ms).
    pub start_ms: i64,
}

impl Default for SimParams {
    fn default() -> Self {
        Self {
            devices: 100,
            samples: 720,
            seed: 0,
            fault_rate: 0.1,
            interval_secs: 3600,
            start_ms: 1_767_225_600_000,
        }
    }
}

/// Device models and OS versions: 5 × 2 = 10 cohorts, each with its own normal.
const MODELS: [(&str, f64, f64); 5] =
    [("tc52", 0.0, 0.0), ("tc57", 2.0, 5.0), ("et40", -1.5, -3.0), ("mc93", 3.0, 8.0), ("zq630", 1.0, -6.0)];
const OSES: [&str; 2] = ["android-11", "android-13"];
const SITES: [&str; 5] = ["berlin-dc", "lyon-hub", "leeds-store", "austin-dc", "osaka-port"];
const FIRMWARE: [&str; 3] = ["4.1", "4.2", "4.3"];

/// Metrics every simulated device reports.
pub const METRICS: [&str; 9] = [
    "battery_pct",
    "battery_temp_c",
    "cpu_pct",
    "mem_pct",
    "storage_pct",
    "net_rx_kb",
    "net_tx_kb",
    "signal_dbm",
    "app_crashes",
];

fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn poisson(rng: &mut Xoshiro256PlusPlus, lambda: f64) -> f64 {
    // Knuth's method; fine for the small rates used here.
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0.0, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1.0;
    }
}

/// Simulates the fleet: samples in time order (all devices at each tick) and the faults.
pub fn simulate(p: &SimParams) -> (Vec<Sample>, Vec<FaultEpisode>) {
    let mut base = Xoshiro256PlusPlus::seed_from_u64(p.seed);
    let mut devices = Vec::with_capacity(p.devices);
    for i in 0..p.devices {
        let mut rng = base.clone();
        base.jump();
        let (model, temp_off, cpu_off) = MODELS[i % MODELS.len()];
        let os = OSES[(i / MODELS.len()) % OSES.len()];
        let fault = (rng.random::<f64>() < p.fault_rate).then(|| {
            let kind = FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())];
            let latest = p.samples.saturating_sub(kind.duration() + 2).max(p.samples / 4 + 1);
            let start = rng.random_range(p.samples / 4..latest.max(p.samples / 4 + 1));
            (kind, start)
        });
        devices.push(Device {
            id: format!("dev-{i:05}").into(),
            cohort: format!("{model}/{os}").into(),
            labels: Arc::new(BTreeMap::from([
                ("model".to_string(), model.to_string()),
                ("os".to_string(), os.to_string()),
                ("site".to_string(), SITES[rng.random_range(0..SITES.len())].to_string()),
                ("firmware".to_string(), FIRMWARE[rng.random_range(0..FIRMWARE.len())].to_string()),
            ])),
            temp_off: temp_off + 0.5 * normal(&mut rng),
            cpu_off: cpu_off + 2.0 * normal(&mut rng),
            phase: rng.random_range(0.0..3.0),
            battery: rng.random_range(60.0..95.0),
            fault,
            rng,
        });
    }
    let step_ms = p.interval_secs * 1000;
    let names = MetricLayout::new(METRICS.iter().map(|&m| Arc::from(m)).collect()).expect("distinct names");
    let mut samples = Vec::with_capacity(p.devices * p.samples);
    for t in 0..p.samples {
        let ts = p.start_ms + t as i64 * step_ms;
        for dev in &mut devices {
            if let Some(s) = dev.sample(t, ts, p.interval_secs, &names) {
                samples.push(s);
            }
        }
    }
    let episodes = devices
        .iter()
        .filter_map(|d| {
            d.fault.map(|(kind, start)| FaultEpisode {
                device_id: d.id.clone(),
                kind,
                start: Timestamp(p.start_ms + start as i64 * step_ms),
                end: Timestamp(p.start_ms + (start + kind.duration()) as i64 * step_ms),
            })
        })
        .collect();
    (samples, episodes)
}

struct Device {
    id: Arc<str>,
    cohort: Arc<str>,
    labels: Labels,
    temp_off: f64,
    cpu_off: f64,
    phase: f64,
    battery: f64,
    fault: Option<(FaultKind, usize)>,
    rng: Xoshiro256PlusPlus,
}

impl Device {
    fn sample(&mut self, t: usize, ts: i64, interval_secs: i64, names: &MetricLayout) -> Option<Sample> {
        let hour = ((ts / 1000 / 3600) % 24) as f64 + self.phase;
        let day = (std::f64::consts::PI * (hour - 7.0) / 12.0).sin().max(0.0); // 0 at night, 1 at midday
        let fault = self.fault.filter(|&(_, start)| t >= start && t < start + 64);
        let in_fault = |kind: FaultKind| fault.is_some_and(|(k, s)| k == kind && t < s + kind.duration());
        if in_fault(FaultKind::MissingHeartbeat) {
            // The device still runs (the battery keeps changing) but nothing is reported.
            self.battery = (self.battery - 2.0).max(15.0);
            return None;
        }
        let rng = &mut self.rng;
        let hours = interval_secs as f64 / 3600.0;
        // Battery: charges at night, drains by day.
        let charging = day < 0.05;
        self.battery += if charging { 7.0 * hours } else { -(2.0 + 4.0 * day) * hours };
        self.battery = self.battery.clamp(15.0, 97.0 + rng.random_range(0.0..3.0));
        let mut battery = self.battery + 0.4 * normal(rng);
        let mut temp =
            31.0 + self.temp_off + 6.0 * day + if charging { 3.0 } else { 0.0 } + 0.6 * normal(rng);
        let mut cpu = (18.0 + self.cpu_off + 30.0 * day + 5.0 * normal(rng)).clamp(0.0, 100.0);
        let mem = (48.0 + 12.0 * day + 3.0 * normal(rng)).clamp(0.0, 100.0);
        let storage = 40.0 + 0.01 * t as f64 + 0.05 * normal(rng);
        let rx = (600.0 * day + 50.0 + 40.0 * normal(rng)).max(0.0);
        let tx = (120.0 * day + 10.0 + 10.0 * normal(rng)).max(0.0);
        let signal = -72.0 + 3.0 * normal(rng);
        let mut crashes = poisson(rng, 0.03);
        if let Some((kind, start)) = fault {
            let k = (t - start) as f64;
            match kind {
                FaultKind::Spike if in_fault(kind) => {
                    temp += 22.0;
                    cpu = 100.0;
                }
                FaultKind::Drift if in_fault(kind) => temp += 0.8 * (k + 1.0),
                FaultKind::Stuck if in_fault(kind) => battery = 63.0,
                FaultKind::BatteryDrain if in_fault(kind) => {
                    self.battery = (self.battery - 14.0 * hours).max(0.0);
                    battery = self.battery;
                    temp += 6.0;
                }
                FaultKind::CrashStorm if in_fault(kind) => crashes = 15.0 + poisson(rng, 10.0),
                _ => {}
            }
        }
        let metrics = [battery, temp, cpu, mem, storage, rx, tx, signal, crashes];
        let sample = Sample::new(
            self.id.clone(),
            Timestamp(ts),
            names.clone(),
            metrics.to_vec(),
            Some(self.cohort.clone()),
            self.labels.clone(),
        );
        Some(sample.expect("simulated values are finite"))
    }
}
