//! `anomalyd train`: fit a forest on a feature table and save it.

use std::path::PathBuf;
use std::time::Instant;

use anomalyd_engine::IsolationForest;

use super::{ForestArgs, InputArgs, write_atomic};
use crate::input::read_table;
use crate::progress;

/// Arguments of `anomalyd train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Column to leave out of the features (e.g. a ground-truth label).
    #[arg(long)]
    label_column: Option<String>,
    #[command(flatten)]
    forest: ForestArgs,
    /// Seed for every random choice; the same seed gives the same model on any thread count.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the model.
    #[arg(long, short)]
    output: PathBuf,
}

/// Runs `anomalyd train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let table = read_table(
        &args.input.input,
        args.input.input_format,
        &args.input.selection(args.label_column.as_deref()),
    )?;
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
