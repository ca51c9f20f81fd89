//! `anomalyd`: fleet anomaly detection with a fast Isolation Forest.
//!
//! The binary is glue: argument parsing, file IO, progress bars and exit codes. The
//! algorithms live in `anomalyd-engine`.

mod commands;
mod config;
mod input;
mod output;
mod parquet_input;
mod progress;
mod telemetry_input;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::input::InputError;

/// mimalloc instead of glibc's malloc: the ingest path allocates per sample on three threads
/// (request parsing, features, the writer's SQLite), and glibc's allocator was about 15 % of
/// the server's CPU there. Same-session ingest runs (fresh database, 10,000 devices, 8 s):
/// glibc 128-149k samples/s at 9.0-11.0 µs of server CPU per sample and 85-88 MiB RSS;
/// mimalloc without huge pages 132-157k at 8.5-10.3 µs and 99-103 MiB; with huge pages
/// 148-175k at 7.6-9.2 µs but 139-147 MiB, which leaves no room under the 150 MB target.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for usage and input errors (clap uses 2 for usage errors as well).
const EXIT_INPUT: u8 = 2;
/// Exit code for every other failure.
const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "anomalyd",
    version,
    about = "Fleet anomaly detection: train, evaluate and score Isolation Forest models",
    long_about = "anomalyd trains Isolation Forest models with scikit-learn's semantics an order of \
                  magnitude faster, scores and explains rows, and evaluates accuracy on labelled data.\n\n\
                  Input files: .csv, .csv.gz, .ndjson/.jsonl, .parquet (chosen by extension; \
                  --input-format overrides; `-` reads CSV from stdin).",
    propagate_version = true,
    after_help = "Examples:\n  \
        anomalyd train --input data.csv --label-column label --trees 300 --seed 1 --output model.adm\n  \
        anomalyd score --model model.adm --input new.parquet --explain --format ndjson\n  \
        anomalyd evaluate --input data.csv.gz --label-column label --seeds 0..4\n  \
        anomalyd inspect model.adm"
)]
struct Cli {
    /// Worker threads for training and scoring (default: all cores).
    #[arg(long, global = true, env = "ANOMALYD_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model on a feature table and save it.
    Train(commands::train::TrainArgs),
    /// Score rows with a saved model: anomaly score, label, grade, severity, explanation.
    Score(commands::score::ScoreArgs),
    /// Fit and score a labelled table over several seeds; report ROC-AUC, AP and timings.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Write a simulated fleet's telemetry (with injected, labelled faults).
    Simulate(commands::simulate::SimulateArgs),
    /// Per-series detection on a labelled time series (NAB format): windows found, false alarms.
    EvaluateStream(commands::evaluate_stream::EvaluateStreamArgs),
    /// Start the server with a simulated fleet streaming live faults (try this first).
    Demo(commands::demo::DemoArgs),
    /// Serve the HTTP API (health probes, anomalies) on the configured database.
    Serve(commands::serve::ServeArgs),
    /// Create, list and revoke API keys.
    Keys(commands::keys::KeysArgs),
    /// Show the merged server settings (`config show`).
    Config(commands::config_show::ConfigArgs),
    /// Create the database or apply pending schema migrations.
    Migrate(commands::migrate::MigrateArgs),
    /// Show a model's parameters, features and size.
    Inspect(commands::inspect::InspectArgs),
    /// Time training and scoring in-process on raw f32 matrices (used by bench/side_by_side.py).
    Bench(commands::bench::BenchArgs),
    /// Seed a database and drive unique ingest load against a server (used by bench/load_bench.py).
    BenchApi(commands::bench_api::BenchApiArgs),
    /// Time rolling features and whole fleet training in-process (used by bench/fleet_bench.py).
    BenchFleet(commands::bench_fleet::BenchFleetArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global()
    {
        eprintln!("error: cannot start {n} threads: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let result = match &cli.command {
        Command::Train(a) => commands::train::run(a),
        Command::Score(a) => commands::score::run(a),
        Command::Evaluate(a) => commands::evaluate::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Simulate(a) => commands::simulate::run(a),
        Command::Migrate(a) => commands::migrate::run(a),
        Command::Config(a) => commands::config_show::run(a),
        Command::Keys(a) => commands::keys::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Demo(a) => commands::demo::run(a),
        Command::EvaluateStream(a) => commands::evaluate_stream::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::BenchFleet(a) => commands::bench_fleet::run(a),
        Command::BenchApi(a) => commands::bench_api::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            if err.chain().any(|e| {
                e.is::<InputError>()
                    || e.is::<anomalyd_formats::FormatError>()
                    || e.is::<anomalyd_engine::EngineError>()
            }) {
                ExitCode::from(EXIT_INPUT)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

/// `anomalyd score ... | head` must not report an error when `head` exits.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
