//! Criterion benchmarks of the Isolation Forest: fitting, batch and single-row scoring,
//! explanation and model loading.
//!
//! Run all with `cargo bench -p anomalyd-engine --bench forest`, a fast pass with
//! `... -- --quick`, a smoke test (each routine once) with `... -- --test`, one group with
//! e.g. `... -- score/`.
//!
//! Data are synthetic and deterministic: 25 independent standard Gaussian features, with 1 %
//! of the rows outliers shifted by ±6σ in a few features, drawn from a seeded Xoshiro256++
//! (Box–Muller). The scored model has 300 trees with `max_samples` 256, trained on 100 000
//! rows, i.e. the size a production detector typically runs with.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use anomalyd_engine::{ForestParams, IsolationForest, Matrix};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Features per row.
const N_FEATURES: usize = 25;
/// Fraction of rows that are outliers.
const OUTLIER_FRACTION: f64 = 0.01;
/// Features shifted in each outlier row.
const OUTLIER_FEATURES: usize = 3;
/// Shift of an outlier feature, in standard deviations.
const OUTLIER_SIGMA: f32 = 6.0;
/// Rows the scored model is trained on.
const TRAIN_ROWS: usize = 100_000;
/// Trees of every benchmarked model.
const N_TREES: usize = 300;
/// Rows per tree of every benchmarked model.
const MAX_SAMPLES: usize = 256;

/// Deterministic Gaussian data with 1 % outliers: `n_rows` × [`N_FEATURES`], row-major.
///
/// Different `seed`s give independent data sets (training data and scored data differ).
fn synthetic(n_rows: usize, seed: u64) -> Matrix {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut data = Vec::with_capacity(n_rows * N_FEATURES);
    // Box–Muller yields normals in pairs; keep the spare one instead of wasting it.
    let mut spare: Option<f32> = None;
    let mut normal = |rng: &mut Xoshiro256PlusPlus| -> f32 {
        if let Some(z) = spare.take() {
            return z;
        }
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        spare = Some((r * theta.sin()) as f32);
        (r * theta.cos()) as f32
    };
    for _ in 0..n_rows {
        let start = data.len();
        for _ in 0..N_FEATURES {
            data.push(normal(&mut rng));
        }
        if rng.random_bool(OUTLIER_FRACTION) {
            for _ in 0..OUTLIER_FEATURES {
                let f = rng.random_range(0..N_FEATURES);
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                data[start + f] += sign * OUTLIER_SIGMA;
            }
        }
    }
    Matrix::new(data, N_FEATURES, &[]).expect("finite synthetic data")
}

fn feature_names() -> Vec<String> {
    (0..N_FEATURES).map(|f| format!("f{f}")).collect()
}

fn params() -> ForestParams {
    ForestParams { n_trees: N_TREES, max_samples: Some(MAX_SAMPLES), seed: 1, ..Default::default() }
}

/// The model every scoring, explaining and loading benchmark uses; fitted once per process.
fn model() -> &'static IsolationForest {
    static MODEL: OnceLock<IsolationForest> = OnceLock::new();
    MODEL.get_or_init(|| {
        IsolationForest::fit(&synthetic(TRAIN_ROWS, 1), feature_names(), &params()).expect("fit")
    })
}

/// Shared configuration for every group, in the spirit of linfa's benches: few samples and
/// short measurement windows, so that the slow (1 M-row) cases stay affordable on a 2-core
/// machine and `-- --quick` finishes in well under 3 minutes. Command-line flags still
/// override these.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .noise_threshold(0.03)
}

/// `fit/{10k,100k,1m}`: fitting alone (data generated beforehand). Fit cost is dominated by
/// the 300 trees of 256 samples and the calibration sample, so it grows only slowly with n.
fn bench_fit(c: &mut Criterion) {
    let mut group = c.benchmark_group("fit");
    group.sample_size(10);
    for (label, n) in [("10k", 10_000), ("100k", 100_000), ("1m", 1_000_000)] {
        let data = synthetic(n, 2);
        let names = feature_names();
        let p = params();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| IsolationForest::fit(black_box(&data), names.clone(), &p).expect("fit"))
        });
    }
    group.finish();
}

/// `score/{1,100,10k,1m}`: anomaly scores of fresh rows. `score/1` is the single-row API
/// ([`IsolationForest::score_row`], the online path); the others score a [`Matrix`] with
/// [`IsolationForest::score_samples`] (blocked kernel, parallel above 512 rows).
fn bench_score(c: &mut Criterion) {
    let model = model();
    let mut group = c.benchmark_group("score");
    let rows = synthetic(1_000_000, 3);

    let one = rows.row(0).to_vec();
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter("1"), |b| {
        b.iter(|| model.score_row(black_box(&one)).expect("score"))
    });

    for (label, n) in [("100", 100), ("10k", 10_000), ("1m", 1_000_000)] {
        let batch = if n == rows.n_rows() {
            rows.clone()
        } else {
            Matrix::new(rows.as_slice()[..n * N_FEATURES].to_vec(), N_FEATURES, &[]).expect("slice")
        };
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| model.score_samples(black_box(&batch)).expect("score"))
        });
    }
    group.finish();
}

/// `explain/1`: score and top-3 attribution of one clear outlier row.
fn bench_explain(c: &mut Criterion) {
    let model = model();
    let mut group = c.benchmark_group("explain");
    // An outlier in features 0 and 7, so the attribution walk has real work to share out.
    let mut row = vec![0f32; N_FEATURES];
    row[0] = OUTLIER_SIGMA;
    row[7] = -OUTLIER_SIGMA;
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter("1"), |b| {
        b.iter(|| model.explain_row(black_box(&row), 3).expect("explain"))
    });
    group.finish();
}

/// `load/model`: decoding and validating the serialised 300-tree model. Throughput is in
/// bytes of model file, the quantity load time scales with.
fn bench_load(c: &mut Criterion) {
    let bytes = model().to_bytes();
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function(BenchmarkId::from_parameter("model"), |b| {
        b.iter(|| IsolationForest::from_bytes(black_box(&bytes)).expect("load"))
    });
    group.finish();
}

/// The benchmark group. Wrapped in a private module because `criterion_group!` generates
/// an undocumented `pub fn`, which the workspace's `missing_docs` lint would flag.
mod group {
    use super::*;
    criterion_group! {
        name = benches;
        config = config();
        targets = bench_fit, bench_score, bench_explain, bench_load
    }
}
criterion_main!(group::benches);
