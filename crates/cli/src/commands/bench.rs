//! `anomalyd bench`: in-process timings of training, scoring and model loading on raw `f32`
//! matrices, printed as one JSON object. `bench/side_by_side.py` runs it next to
//! scikit-learn and isotree and merges everything into one table; see `bench/README.md`.
//!
//! Inputs are raw little-endian `f32` files in row-major order (numpy's
//! `astype('<f4').tofile()`); the row count is the file size over `4 × features`.
//! Every measurement runs inside a local rayon pool with the requested number of threads
//! (the global pool that `--threads` may have built is not used), after one warm-up call,
//! and repeats until both a minimum count and a time budget are reached. Building the
//! [`Matrix`] (a copy plus a scan for ±inf) is not timed: the timed calls are
//! `IsolationForest::fit`, `score_samples`, `score_row` and `from_bytes`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anomalyd_engine::{ForestParams, IsolationForest, Matrix, RandomStream, metrics};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

/// Arguments of `anomalyd bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Training matrix: raw little-endian f32, row-major, `--features` columns.
    #[arg(long)]
    train: PathBuf,
    /// Scoring matrix: raw little-endian f32, row-major, `--features` columns.
    #[arg(long)]
    score: PathBuf,
    /// Optional ground truth for the scoring matrix: one byte per row, 1 = outlier. When given,
    /// the ROC-AUC of the largest batch is reported as a sanity check.
    #[arg(long)]
    score_labels: Option<PathBuf>,
    /// Number of feature columns of both matrices.
    #[arg(long, default_value_t = 25)]
    features: usize,
    /// Training sizes to time: the first N rows of the training matrix.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    fit_sizes: Vec<usize>,
    /// Rows (first N of the training matrix) of the model used for scoring and model size.
    #[arg(long, default_value_t = 100_000)]
    model_rows: usize,
    /// Scoring batch sizes (first rows of the scoring matrix); 1 is timed with `score_row`.
    #[arg(long, value_delimiter = ',', default_value = "1,100,10000,1000000")]
    batches: Vec<usize>,
    /// Thread counts to run, each in its own rayon pool (named so as not to clash with the
    /// global `--threads`, which `bench` ignores).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    thread_counts: Vec<usize>,
    /// Number of trees.
    #[arg(long, default_value_t = 300)]
    trees: usize,
    /// Rows drawn per tree.
    #[arg(long, default_value_t = 256)]
    max_samples: usize,
    /// Seed of every fit.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Random stream of every fit: `anomalyd` or `scikit-learn` (see `train --help`).
    #[arg(long, default_value = "anomalyd")]
    random_stream: RandomStream,
    /// Minimum timed repetitions of each measurement (after one warm-up call).
    #[arg(long, default_value_t = 5)]
    min_repeat: usize,
    /// Maximum timed repetitions of each measurement (single-row calls excepted).
    #[arg(long, default_value_t = 2_000)]
    max_repeat: usize,
    /// Time budget of each measurement in milliseconds: repetitions continue past
    /// `--min-repeat` until the budget or `--max-repeat` is reached.
    #[arg(long, default_value_t = 1_500)]
    budget_ms: u64,
    /// Individually timed `score_row` calls for the one-row latency.
    #[arg(long, default_value_t = 50_000)]
    row_calls: usize,
}

/// Timings of one measurement, in seconds, and the process CPU time spent over its timed
/// calls (to tell whether the requested threads really got a core each on a busy machine).
#[derive(Debug, Clone)]
struct Stats {
    samples: Vec<f64>,
    /// Process CPU seconds (all threads) over the timed calls, when /proc is readable.
    cpu_s: Option<f64>,
    /// Wall seconds of the whole timed loop.
    wall_s: f64,
}

/// CPU seconds consumed so far by this process, all threads including exited ones: `utime +
/// stime` of `/proc/self/stat`, in clock ticks of 1/100 s (Linux's USER_HZ on x86-64 and
/// arm64). `None` where /proc is absent.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

impl Stats {
    fn quantile(&self, q: f64) -> f64 {
        let mut s = self.samples.clone();
        s.sort_unstable_by(f64::total_cmp);
        let pos = q * (s.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
    }

    fn cores_busy(&self) -> Option<f64> {
        self.cpu_s.map(|c| c / self.wall_s)
    }

    fn cores_note(&self) -> String {
        self.cores_busy().map(|c| format!(" ({c:.2} cores busy)")).unwrap_or_default()
    }

    fn json(&self) -> Value {
        let n = self.samples.len();
        json!({
            "median_s": self.quantile(0.5),
            "min_s": self.quantile(0.0),
            "p90_s": self.quantile(0.9),
            "p99_s": self.quantile(0.99),
            "mean_s": self.samples.iter().sum::<f64>() / n as f64,
            "repeats": n,
            // Process CPU time over the loop's wall time: about 1 per busy thread; below the
            // thread count when other processes took the cores.
            "cores_busy": self.cores_busy(),
        })
    }
}

/// Timing policy shared by every measurement.
#[derive(Debug, Clone, Copy)]
struct Policy {
    min_repeat: usize,
    max_repeat: usize,
    budget: Duration,
}

impl Policy {
    /// One untimed warm-up call of `f`, then timed calls until at least `min_repeat` were
    /// made and either the budget is spent or `max_repeat` calls were made.
    fn measure<T>(&self, mut f: impl FnMut(usize) -> T) -> Stats {
        black_box(f(0));
        let mut samples = Vec::new();
        let cpu0 = process_cpu_seconds();
        let start = Instant::now();
        let mut i = 1;
        while samples.len() < self.min_repeat
            || (samples.len() < self.max_repeat && start.elapsed() < self.budget)
        {
            let t = Instant::now();
            black_box(f(i));
            samples.push(t.elapsed().as_secs_f64());
            i += 1;
        }
        let wall_s = start.elapsed().as_secs_f64();
        let cpu_s = cpu0.zip(process_cpu_seconds()).map(|(a, b)| b - a);
        Stats { samples, cpu_s, wall_s }
    }
}

/// Reads a raw little-endian f32 row-major file with `cols` columns.
fn read_f32(path: &Path, cols: usize) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        cols > 0 && bytes.len() % (4 * cols) == 0,
        "{}: {} bytes is not a whole number of rows of {cols} f32 values",
        path.display(),
        bytes.len()
    );
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn matrix(data: &[f32], rows: usize, cols: usize, what: &str) -> anyhow::Result<Matrix> {
    let have = data.len() / cols;
    ensure!(rows >= 1 && rows <= have, "{what}: asked for {rows} rows, the file has {have}");
    Ok(Matrix::new(data[..rows * cols].to_vec(), cols, &[])?)
}

/// Runs `anomalyd bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let d = args.features;
    let train = read_f32(&args.train, d)?;
    let score = read_f32(&args.score, d)?;
    let n_score = score.len() / d;
    let labels = match &args.score_labels {
        Some(p) => {
            let raw = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            ensure!(raw.len() == n_score, "{}: {} labels for {n_score} scoring rows", p.display(), raw.len());
            Some(raw.into_iter().map(|b| b != 0).collect::<Vec<bool>>())
        }
        None => None,
    };
    if args.thread_counts.contains(&0) {
        bail!("--thread-counts: every count must be at least 1");
    }
    let names: Vec<String> = (0..d).map(|i| format!("f{i}")).collect();
    let params = ForestParams {
        n_trees: args.trees,
        max_samples: Some(args.max_samples),
        seed: args.seed,
        random_stream: args.random_stream,
        ..Default::default()
    };
    let policy = Policy {
        min_repeat: args.min_repeat.max(1),
        max_repeat: args.max_repeat.max(args.min_repeat.max(1)),
        budget: Duration::from_millis(args.budget_ms),
    };

    // Matrices are built once, outside every timed region.
    let fit_sets: Vec<(usize, Matrix)> = args
        .fit_sizes
        .iter()
        .map(|&n| Ok((n, matrix(&train, n, d, "--fit-sizes")?)))
        .collect::<anyhow::Result<_>>()?;
    let model_data = matrix(&train, args.model_rows, d, "--model-rows")?;
    // Several distinct batches per size (up to 16, within the scoring matrix) so repeated
    // calls do not keep scoring the very same rows.
    let batch_sets: Vec<(usize, Vec<Matrix>)> = args
        .batches
        .iter()
        .filter(|&&n| n > 1)
        .map(|&n| {
            ensure!(n <= n_score, "--batches: {n} rows asked, the scoring matrix has {n_score}");
            let k = (n_score / n).clamp(1, 16);
            let ms = (0..k)
                .map(|i| Ok(Matrix::new(score[i * n * d..(i + 1) * n * d].to_vec(), d, &[])?))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((n, ms))
        })
        .collect::<anyhow::Result<_>>()?;

    let mut runs = Vec::new();
    for &threads in &args.thread_counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("bench-{i}"))
            .build()
            .with_context(|| format!("cannot start {threads} threads"))?;
        eprintln!("anomalyd bench: {threads} thread(s)");
        let run = pool.install(|| -> anyhow::Result<Value> {
            let actual_threads = rayon::current_num_threads();
            let mut fits = Vec::new();
            for (n, data) in &fit_sets {
                let st = policy
                    .measure(|_| IsolationForest::fit(data, names.clone(), &params).expect("valid fit"));
                eprintln!("  fit {n:>9} rows: median {:.3} ms{}", st.quantile(0.5) * 1e3, st.cores_note());
                fits.push(json!({"rows": n, "stats": st.json()}));
            }

            let model = IsolationForest::fit(&model_data, names.clone(), &params)?;
            let mut scores = Vec::new();
            let mut auc = None;
            if args.batches.contains(&1) {
                // One row, in-process: every call timed on its own, rows cycled through the
                // scoring matrix. Also a bulk loop (no per-call timer) and score_samples on a
                // one-row matrix, for comparison.
                let rows: Vec<&[f32]> = score.chunks_exact(d).take(n_score.min(65_536)).collect();
                for r in rows.iter().take(1_000) {
                    black_box(model.score_row(r)?);
                }
                let mut samples = Vec::with_capacity(args.row_calls.max(1));
                let cpu0 = process_cpu_seconds();
                let start = Instant::now();
                for i in 0..args.row_calls.max(1) {
                    let r = rows[i % rows.len()];
                    let t = Instant::now();
                    black_box(model.score_row(black_box(r))?);
                    samples.push(t.elapsed().as_secs_f64());
                }
                let wall_s = start.elapsed().as_secs_f64();
                let cpu_s = cpu0.zip(process_cpu_seconds()).map(|(a, b)| b - a);
                let st = Stats { samples, cpu_s, wall_s };
                let t = Instant::now();
                let bulk_calls = args.row_calls.max(1);
                for i in 0..bulk_calls {
                    black_box(model.score_row(black_box(rows[i % rows.len()]))?);
                }
                let bulk_mean = t.elapsed().as_secs_f64() / bulk_calls as f64;
                let one_row_mats: Vec<Matrix> = rows
                    .iter()
                    .take(64)
                    .map(|r| Matrix::new(r.to_vec(), d, &[]))
                    .collect::<Result<_, _>>()?;
                let st_samples = policy
                    .measure(|i| model.score_samples(&one_row_mats[i % one_row_mats.len()]).expect("width"));
                eprintln!(
                    "  score_row       1 row : median {:.2} µs (bulk mean {:.2} µs, score_samples {:.2} µs)",
                    st.quantile(0.5) * 1e6,
                    bulk_mean * 1e6,
                    st_samples.quantile(0.5) * 1e6
                );
                scores.push(json!({
                    "rows": 1,
                    "method": "score_row",
                    "stats": st.json(),
                    "bulk_mean_s": bulk_mean,
                    "score_samples_one_row": st_samples.json(),
                }));
            }
            for (n, mats) in &batch_sets {
                let st = policy.measure(|i| model.score_samples(&mats[i % mats.len()]).expect("width"));
                eprintln!(
                    "  score_samples {n:>9} rows: median {:.3} ms{}",
                    st.quantile(0.5) * 1e3,
                    st.cores_note()
                );
                scores.push(json!({"rows": n, "method": "score_samples", "stats": st.json()}));
            }
            if let (Some(labels), Some((n, mats))) = (&labels, batch_sets.iter().max_by_key(|(n, _)| *n)) {
                let s = model.score_samples(&mats[0])?;
                auc = metrics::roc_auc(&s, &labels[..*n]).map(|a| json!({"rows": n, "roc_auc": a}));
            }

            let bytes = model.to_bytes();
            let load = policy.measure(|_| IsolationForest::from_bytes(&bytes).expect("own bytes load"));
            eprintln!("  model {} bytes, from_bytes median {:.3} ms", bytes.len(), load.quantile(0.5) * 1e3);
            Ok(json!({
                "threads": threads,
                "rayon_threads": actual_threads,
                "fit": fits,
                "score": scores,
                "model": {
                    "trained_rows": args.model_rows,
                    "bytes": bytes.len(),
                    "nodes": model.n_nodes(),
                    "load": load.json(),
                },
                "sanity": auc,
            }))
        })?;
        runs.push(run);
    }

    #[cfg(target_arch = "x86_64")]
    let cpu = json!({
        "avx2": std::arch::is_x86_feature_detected!("avx2"),
        "avx512f": std::arch::is_x86_feature_detected!("avx512f"),
        "fma": std::arch::is_x86_feature_detected!("fma"),
    });
    #[cfg(not(target_arch = "x86_64"))]
    let cpu = json!({});
    let report = json!({
        "anomalyd_version": env!("CARGO_PKG_VERSION"),
        "features": d,
        "trees": args.trees,
        "max_samples": args.max_samples,
        "seed": args.seed,
        "train_rows_available": train.len() / d,
        "score_rows_available": n_score,
        "policy": {"min_repeat": policy.min_repeat, "max_repeat": policy.max_repeat, "budget_ms": args.budget_ms, "row_calls": args.row_calls},
        "cpu_features_detected": cpu,
        "runs": runs,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
