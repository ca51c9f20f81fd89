//! `anomalyd score`: score a table with a saved model.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;

use super::{InputArgs, load_model};
use crate::input::{InputError, read_table};
use crate::output::{RowFormat, csv_header, write_row};
use crate::progress;

/// Arguments of `anomalyd score`.
#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Model file written by `anomalyd train`.
    #[arg(long, short)]
    model: PathBuf,
    #[command(flatten)]
    input: InputArgs,
    /// Output file, or `-` for stdout.
    #[arg(long, short, default_value = "-")]
    output: String,
    /// Output format [default: from the output extension, else csv].
    #[arg(long, value_enum)]
    format: Option<RowFormat>,
    /// Add each row's most important features (`top_features`).
    #[arg(long)]
    explain: bool,
    /// Number of features listed per row with --explain.
    #[arg(long, default_value_t = 3)]
    top: usize,
}

/// Rows handed to the engine at a time: bounded memory for the output, parallel inside.
const BATCH_ROWS: usize = 65_536;

/// Runs `anomalyd score`.
pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    // Read the model's features by name unless the user picked columns; other columns
    // (ids, labels) are ignored.
    let mut input = args.input.clone();
    if input.features.is_none() {
        input.features = Some(model.feature_names().to_vec());
    }
    let table = read_table(&input.input, input.input_format, &input.selection(None))?;
    if table.names.len() != model.n_features() {
        return Err(InputError(format!(
            "{}: the model expects {} features, {} were selected",
            input.input,
            model.n_features(),
            table.names.len()
        ))
        .into());
    }
    let format =
        args.format.unwrap_or(if args.output.ends_with(".ndjson") || args.output.ends_with(".jsonl") {
            RowFormat::Ndjson
        } else {
            RowFormat::Csv
        });
    let sink: Box<dyn Write> = if args.output == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(File::create(&args.output).with_context(|| format!("cannot create {}", args.output))?)
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    if format == RowFormat::Csv {
        csv_header(&mut out, args.explain)?;
    }
    let n = table.matrix.n_rows();
    let d = table.matrix.n_cols();
    let bar = progress::steps(n as u64, "scoring");
    let explain = args.explain.then_some(args.top);
    for start in (0..n).step_by(BATCH_ROWS) {
        let end = (start + BATCH_ROWS).min(n);
        let chunk = anomalyd_engine::Matrix::new(
            table.matrix.as_slice()[start * d..end * d].to_vec(),
            d,
            &table.names,
        )?;
        for a in model.assess(&chunk, explain)? {
            write_row(&mut out, &a, format, args.explain)?;
        }
        bar.set_position(end as u64);
    }
    bar.finish_and_clear();
    out.flush()?;
    Ok(())
}
