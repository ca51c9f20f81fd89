//! Scoring probe for profiling (`perf record`, callgrind): trains the benchmark's model (300
//! trees, `max_samples` 256, 25 Gaussian features, seed 1) and times `score_samples` on
//! fresh rows, printing the median, p90 and best call and a checksum of the scores (which
//! must not change when a kernel is only made faster).
//!
//! `cargo run --release -p anomalyd-engine --example score_probe -- [rows] [repeats]
//! [threads] [nan_every]`: defaults 200000, 5, 1 and 0; with `nan_every = k` every k-th row
//! misses one value, to time the missing-value walk.
mod common;

use anomalyd_engine::{ForestParams, IsolationForest, Matrix};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rows: usize = a.get(1).map(|s| s.parse().unwrap()).unwrap_or(200_000);
    let reps: usize = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(5);
    let threads: usize = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(1);
    let d = 25;
    let names: Vec<String> = (0..d).map(|i| format!("f{i}")).collect();
    let params = ForestParams { n_trees: 300, max_samples: Some(256), seed: 1, ..Default::default() };
    let model = IsolationForest::fit(&common::gaussian(100_000, d, 1), names, &params).unwrap();
    let nan_every: usize = a.get(4).map(|s| s.parse().unwrap()).unwrap_or(0);
    let mut v = common::gaussian(rows, d, 2).as_slice().to_vec();
    if nan_every > 0 {
        for r in (0..rows).step_by(nan_every) {
            v[r * d + r % d] = f32::NAN;
        }
    }
    let x = Matrix::new(v, d, &[]).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let s = model.score_samples(&x).unwrap();
        let mut times = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let s2 = model.score_samples(&x).unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(s, s2);
        }
        times.sort_by(f64::total_cmp);
        let best = times[0];
        println!("median {:.3} ms p90 {:.3} ms", times[reps / 2] * 1e3, times[reps * 9 / 10] * 1e3);
        let sum: f64 = s.iter().map(|&v| v as f64).sum();
        println!(
            "{rows} rows, {threads} thr: best {:.1} ms, {:.3} us/row, checksum {sum:.6}",
            best * 1e3,
            best * 1e6 / rows as f64
        );
    });
}
