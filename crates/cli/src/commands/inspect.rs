//! `anomalyd inspect`: what a model file holds.

use std::path::PathBuf;

use anomalyd_engine::format::unwrap_versioned;
use serde_json::json;

use anomalyd_engine::fleet::FleetBundle;
use anomalyd_engine::fleet::bundle::KIND_BUNDLE;

use super::load_model;
use crate::input::InputError;
use std::fmt::Write as _;

use crate::output::{OutputFormat, print};

/// Arguments of `anomalyd inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Model file.
    model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

/// Runs `anomalyd inspect`.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.model)
        .map_err(|e| InputError(format!("{}: cannot read model: {e}", args.model.display())))?;
    if matches!(anomalyd_engine::format::unwrap(&bytes), Ok((KIND_BUNDLE, _))) {
        return inspect_bundle(args, &bytes);
    }
    let model = load_model(&args.model)?;
    // The file's own version (this build also reads older ones).
    let version = unwrap_versioned(&bytes).map(|(v, _, _)| v)?;
    let size = std::fs::metadata(&args.model)?.len();
    let p = model.params();
    let features: Vec<_> = model
        .feature_names()
        .iter()
        .zip(model.feature_stats())
        .map(|(n, s)| json!({"name": n, "p05": s.p05, "p50": s.p50, "p95": s.p95}))
        .collect();
    let info = json!({
        "file": args.model.display().to_string(),
        "format_version": version,
        "size_bytes": size,
        "trees": model.n_trees(),
        "nodes": model.n_nodes(),
        "max_samples": p.max_samples(),
        "max_depth": p.max_depth(),
        "max_features": p.max_features(),
        "features_per_tree": p.features_per_tree(),
        "contamination": p.contamination().to_string(),
        "threshold": model.threshold(),
        "seed": p.seed(),
        "random_stream": p.random_stream().to_string(),
        "training_rows": model.n_train(),
        "calibration_rows": model.calibration().len(),
        "confidence": model.calibration().confidence(),
        "features": features,
    });
    match args.format {
        OutputFormat::Json => print(&format!("{}\n", serde_json::to_string_pretty(&info)?))?,
        OutputFormat::Text => {
            let mut t = String::new();
            writeln!(t, "model        {}", args.model.display())?;
            writeln!(t, "format       v{version}, {size} bytes ({:.1} KiB)", size as f64 / 1024.0)?;
            writeln!(
                t,
                "trees        {} ({} nodes, depth limit {})",
                model.n_trees(),
                model.n_nodes(),
                p.max_depth()
            )?;
            writeln!(t, "max_samples  {}", p.max_samples())?;
            writeln!(t, "max_features {} ({} per tree)", p.max_features(), p.features_per_tree())?;
            writeln!(
                t,
                "contamination {} (anomaly when score > {:.4})",
                p.contamination(),
                model.threshold()
            )?;
            writeln!(t, "seed         {} ({} random stream)", p.seed(), p.random_stream())?;
            writeln!(
                t,
                "training     {} rows, {} calibration rows, confidence {:.2}",
                model.n_train(),
                model.calibration().len(),
                model.calibration().confidence()
            )?;
            writeln!(t, "features     {}", model.n_features())?;
            for (n, s) in model.feature_names().iter().zip(model.feature_stats()) {
                writeln!(t, "  {n:24} normal {:>12.4} .. {:<12.4} median {:.4}", s.p05, s.p95, s.p50)?;
            }
            print(&t)?;
        }
    }
    Ok(())
}

fn inspect_bundle(args: &InspectArgs, bytes: &[u8]) -> anyhow::Result<()> {
    let bundle =
        FleetBundle::from_bytes(bytes).map_err(|e| InputError(format!("{}: {e}", args.model.display())))?;
    let cfg = &bundle.config;
    let models: Vec<(String, &anomalyd_engine::IsolationForest)> =
        std::iter::once(("global".to_string(), &bundle.global))
            .chain(bundle.cohorts.iter().map(|(k, m)| (format!("cohort:{k}"), m)))
            .collect();
    match args.format {
        OutputFormat::Json => {
            let info = json!({
                "file": args.model.display().to_string(),
                "kind": "fleet bundle",
                "size_bytes": bytes.len(),
                "features": cfg.feature_names(),
                "groups": cfg.group_order,
                "rules": cfg.rules.iter().map(|r| r.name()).collect::<Vec<_>>(),
                "models": models.iter().map(|(n, m)| json!({"name": n, "trees": m.n_trees(), "training_rows": m.n_train(), "threshold": m.threshold()})).collect::<Vec<_>>(),
            });
            print(&format!("{}\n", serde_json::to_string_pretty(&info)?))?;
        }
        OutputFormat::Text => {
            let mut t = String::new();
            writeln!(t, "fleet bundle {} ({:.1} KiB)", args.model.display(), bytes.len() as f64 / 1024.0)?;
            writeln!(t, "groups       {}", cfg.group_order.join(" -> "))?;
            writeln!(t, "features     {}: {}", cfg.features.len(), cfg.feature_names().join(", "))?;
            writeln!(
                t,
                "rules        {}",
                cfg.rules.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
            )?;
            for (n, m) in &models {
                writeln!(
                    t,
                    "model        {n}: {} trees, {} training rows, threshold {:.4}",
                    m.n_trees(),
                    m.n_train(),
                    m.threshold()
                )?;
            }
            print(&t)?;
        }
    }
    Ok(())
}
