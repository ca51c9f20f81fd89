//! Training probe for profiling (`perf record`, callgrind): fits the benchmark's forest (300
//! trees, `max_samples` 256, 25 Gaussian features) on `rows` rows, `repeats` times, and
//! prints the median and best fit and a checksum of the model bytes (which must not change
//! when training is only made faster).
//!
//! `cargo run --release -p anomalyd-engine --example fit_probe -- [rows] [repeats] [threads]
//! [stream]`: defaults 10000, 200, 1 and `anomalyd` (or `scikit-learn`).
mod common;

use anomalyd_engine::{ForestParams, IsolationForest, RandomStream};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rows: usize = a.get(1).map(|s| s.parse().unwrap()).unwrap_or(10_000);
    let reps: usize = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(200).max(1);
    let threads: usize = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(1);
    let d = 25;
    let names: Vec<String> = (0..d).map(|i| format!("f{i}")).collect();
    let random_stream: RandomStream = a.get(4).map(|s| s.parse().unwrap()).unwrap_or_default();
    let params =
        ForestParams { n_trees: 300, max_samples: Some(256), seed: 1, random_stream, ..Default::default() };
    let x = common::gaussian(rows, d, 1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let first = IsolationForest::fit(&x, names.clone(), &params).unwrap().to_bytes();
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            let model = IsolationForest::fit(&x, names.clone(), &params).unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert!(model.to_bytes() == first, "a seed gives the same model on every fit");
        }
        times.sort_by(f64::total_cmp);
        // FNV-1a over the model bytes: a cheap fingerprint to compare builds by.
        let sum = first
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        println!(
            "{rows} rows, {threads} thr: median {:.3} ms, best {:.3} ms, model {} bytes, checksum {sum:016x}",
            times[reps / 2] * 1e3,
            times[0] * 1e3,
            first.len()
        );
    });
}
