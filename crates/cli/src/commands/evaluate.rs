//! `anomalyd evaluate`: accuracy and speed on a labelled table over several seeds.

use std::ops::RangeInclusive;
use std::time::Instant;

use anomalyd_engine::{IsolationForest, metrics};
use serde_json::json;

use super::{ForestArgs, InputArgs};
use crate::input::{InputError, read_table};
use std::fmt::Write as _;

use crate::output::{OutputFormat, print};
use crate::progress;

/// Arguments of `anomalyd evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Ground-truth column: 1/true = anomaly, 0/false = normal.
    #[arg(long)]
    label_column: String,
    /// Seeds to fit with, as `A..B` (inclusive) or a single number.
    #[arg(long, default_value = "0..4", value_parser = parse_seeds)]
    seeds: RangeInclusive<u64>,
    #[command(flatten)]
    forest: ForestArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

fn parse_seeds(s: &str) -> Result<RangeInclusive<u64>, String> {
    let bad = || format!("expected seeds as `A..B` or `N`, got `{s}`");
    match s.split_once("..") {
        Some((a, b)) => {
            let a: u64 = a.trim().parse().map_err(|_| bad())?;
            let b: u64 = b.trim().trim_start_matches('=').parse().map_err(|_| bad())?;
            if a > b {
                return Err(bad());
            }
            Ok(a..=b)
        }
        None => {
            let n: u64 = s.trim().parse().map_err(|_| bad())?;
            Ok(n..=n)
        }
    }
}

/// Runs `anomalyd evaluate`.
pub fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    let path = args.input.path()?;
    let table = read_table(path, args.input.input_format, &args.input.selection(Some(&args.label_column)))?;
    let labels = table.labels.as_ref().expect("label column selected");
    let anomalies = labels.iter().filter(|&&l| l).count();
    if anomalies == 0 || anomalies == labels.len() {
        return Err(InputError(format!(
            "{}: label column `{}` must hold both anomalies (1) and normal rows (0); found {anomalies} anomalies in {} rows",
            path,
            args.label_column,
            labels.len()
        ))
        .into());
    }
    let seeds: Vec<u64> = args.seeds.clone().collect();
    let bar = progress::steps(seeds.len() as u64, "evaluating");
    let mut runs = Vec::new();
    for &seed in &seeds {
        let start = Instant::now();
        let model = IsolationForest::fit(&table.matrix, table.names.clone(), &args.forest.params(seed))?;
        let fit_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        let scores = model.score_samples(&table.matrix)?;
        let score_ms = start.elapsed().as_secs_f64() * 1e3;
        let auc = metrics::roc_auc(&scores, labels).expect("both classes present");
        let ap = metrics::average_precision(&scores, labels).expect("anomalies present");
        runs.push((seed, auc, ap, fit_ms, score_ms));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mean = |f: fn(&(u64, f64, f64, f64, f64)) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
    let (auc, ap, fit, score) = (mean(|r| r.1), mean(|r| r.2), mean(|r| r.3), mean(|r| r.4));
    let sd_auc = (runs.iter().map(|r| (r.1 - auc).powi(2)).sum::<f64>() / runs.len() as f64).sqrt();
    match args.format {
        OutputFormat::Json => {
            let per_seed: Vec<_> = runs
                .iter()
                .map(|r| json!({"seed": r.0, "roc_auc": r.1, "average_precision": r.2, "fit_ms": r.3, "score_ms": r.4}))
                .collect();
            let report = json!({
                "input": path,
                "rows": table.matrix.n_rows(),
                "features": table.matrix.n_cols(),
                "anomalies": anomalies,
                "trees": args.forest.trees,
                "threads": rayon::current_num_threads(),
                "random_stream": args.forest.random_stream.to_string(),
                "seeds": per_seed,
                "mean": {"roc_auc": auc, "roc_auc_std": sd_auc, "average_precision": ap, "fit_ms": fit, "score_ms": score},
            });
            print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
        }
        OutputFormat::Text => {
            let mut t = String::new();
            writeln!(
                t,
                "{}: {} rows × {} features, {anomalies} anomalies; {} trees, {} threads, {} random stream",
                path,
                table.matrix.n_rows(),
                table.matrix.n_cols(),
                args.forest.trees,
                rayon::current_num_threads(),
                args.forest.random_stream
            )?;
            writeln!(
                t,
                "{:>6} {:>8} {:>8} {:>10} {:>10}",
                "seed", "roc_auc", "avg_prec", "fit_ms", "score_ms"
            )?;
            for r in &runs {
                writeln!(t, "{:>6} {:>8.4} {:>8.4} {:>10.2} {:>10.2}", r.0, r.1, r.2, r.3, r.4)?;
            }
            writeln!(t, "{:>6} {:>8.4} {:>8.4} {:>10.2} {:>10.2}", "mean", auc, ap, fit, score)?;
            writeln!(t, "roc_auc std over seeds: {sd_auc:.4}")?;
            print(&t)?;
        }
    }
    Ok(())
}
