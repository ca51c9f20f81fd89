//! `anomalyd train`: fit a forest on a feature table, or a fleet bundle on raw telemetry.

use std::path::PathBuf;
use std::time::Instant;

use anomalyd_engine::IsolationForest;
use anomalyd_engine::fleet::{FleetBundle, FleetConfig, extract_all};

use super::{ForestArgs, InputArgs, write_atomic};
use crate::input::{InputError, read_table};
use crate::progress;
use crate::telemetry_input::read_samples;

/// Arguments of `anomalyd train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Raw telemetry (device_id, ts, cohort, metrics…) to train a fleet bundle from;
    /// needs --config.
    #[arg(long, conflicts_with = "input", requires = "config")]
    telemetry: Option<String>,
    /// Fleet feature configuration (TOML), with --telemetry.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Column to leave out of the features (e.g. a ground-truth label).
    #[arg(long)]
    label_column: Option<String>,
    #[command(flatten)]
    forest: ForestArgs,
    /// Seed for every random choice; the same seed gives the same model on any thread count.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the model or bundle.
    #[arg(long, short)]
    output: PathBuf,
}

/// Runs `anomalyd train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    if let Some(telemetry) = &args.telemetry {
        return train_bundle(args, telemetry);
    }
    let path = args.input.path()?;
    let table =
        read_table(path, args.input.input_format, &args.input.selection(args.label_column.as_deref()))?;
    let spinner = progress::spinner("training");
    let start = Instant::now();
    let model = IsolationForest::fit(&table.matrix, table.names, &args.forest.params(args.seed))?;
    let fit_ms = start.elapsed().as_secs_f64() * 1e3;
    spinner.finish_and_clear();
    let bytes = model.to_bytes();
    write_atomic(&args.output, &bytes)?;
    eprintln!(
        "trained {} trees on {} rows × {} features in {fit_ms:.1} ms; wrote {} ({:.1} KiB)",
        model.n_trees(),
        table.matrix.n_rows(),
        model.n_features(),
        args.output.display(),
        bytes.len() as f64 / 1024.0
    );
    Ok(())
}

/// Loads and validates a fleet configuration file.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<FleetConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError(format!("{}: cannot read config: {e}", path.display())))?;
    FleetConfig::from_toml(&text).map_err(|e| InputError(format!("{}: {e}", path.display())).into())
}

fn train_bundle(args: &TrainArgs, telemetry: &str) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref().expect("clap requires --config"))?;
    let start = Instant::now();
    let samples = read_samples(telemetry, args.input.input_format)?;
    let read_s = start.elapsed().as_secs_f64();
    let spinner = progress::spinner("computing features");
    let t = Instant::now();
    let (rows, refused) = extract_all(&config, samples);
    let features_s = t.elapsed().as_secs_f64();
    for r in refused.iter().take(5) {
        eprintln!("warning: {telemetry}: sample {} of device {}: {}", r.index + 1, r.device_id, r.reason);
    }
    if refused.len() > 5 {
        eprintln!("warning: {} more samples refused", refused.len() - 5);
    }
    spinner.set_message("training models");
    let t = Instant::now();
    let bundle = FleetBundle::train(config, &rows)?;
    let train_s = t.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let bytes = bundle.to_bytes();
    write_atomic(&args.output, &bytes)?;
    eprintln!(
        "fleet bundle: {} rows, {} features, global + {} cohort models; read {read_s:.2} s, features {features_s:.2} s, \
         training {train_s:.2} s, total {:.2} s; wrote {} ({:.1} KiB)",
        rows.len(),
        bundle.config.features.len(),
        bundle.cohorts.len(),
        start.elapsed().as_secs_f64(),
        args.output.display(),
        bytes.len() as f64 / 1024.0
    );
    Ok(())
}
