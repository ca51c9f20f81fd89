//! Reading feature tables from CSV (optionally gzip), NDJSON and Parquet files or stdin.
//!
//! Everything is validated here, at the edge: the engine receives a [`Matrix`] whose values
//! are finite or NaN. Errors name the file, the row (1-based, data rows), and the column.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anomalyd_formats::table::{Sink, read_csv, read_ndjson};
use indicatif::ProgressBar;

use crate::progress;

/// A user-caused problem with the input; the binary exits with code 2 for these.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

impl From<anomalyd_formats::FormatError> for InputError {
    fn from(e: anomalyd_formats::FormatError) -> Self {
        InputError(e.0)
    }
}

fn input_err<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(InputError(msg.into()).into())
}

/// Supported input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Comma-separated values with a header row; `.csv.gz` is decompressed.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Apache Parquet.
    Parquet,
}

impl InputFormat {
    /// Format from the file name: `.csv`, `.csv.gz`, `.ndjson`, `.jsonl`, `.parquet`.
    pub fn from_path(path: &str) -> anyhow::Result<Self> {
        let lower = path.to_ascii_lowercase();
        let lower = lower.strip_suffix(".gz").unwrap_or(&lower);
        if path == "-" || lower.ends_with(".csv") || lower.ends_with(".tsv") {
            Ok(InputFormat::Csv)
        } else if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") || lower.ends_with(".json") {
            Ok(InputFormat::Ndjson)
        } else if lower.ends_with(".parquet") || lower.ends_with(".pq") {
            Ok(InputFormat::Parquet)
        } else {
            input_err(format!(
                "{path}: cannot tell the format from the file name; use .csv, .csv.gz, .ndjson, .jsonl or .parquet, or pass --input-format"
            ))
        }
    }
}

pub use anomalyd_formats::table::{Selection, Table};

/// Reads `path` (`-` for stdin) in `format` (from the extension when `None`).
pub fn read_table(path: &str, format: Option<InputFormat>, sel: &Selection) -> anyhow::Result<Table> {
    let format = match format {
        Some(f) => f,
        None => InputFormat::from_path(path)?,
    };
    let display = if path == "-" { "<stdin>".to_string() } else { path.to_string() };
    let mut sink = Sink::default();
    match format {
        InputFormat::Parquet => {
            if path == "-" {
                return input_err("Parquet cannot be read from stdin; pass a file");
            }
            crate::parquet_input::read(Path::new(path), &display, sel, &mut sink)?;
        }
        InputFormat::Csv | InputFormat::Ndjson => {
            let (reader, bar) = open(path)?;
            if format == InputFormat::Csv {
                read_csv(reader, &display, sel, &mut sink, path.ends_with(".tsv"))
                    .map_err(InputError::from)?;
            } else {
                read_ndjson(reader, &display, sel, &mut sink).map_err(InputError::from)?;
            }
            bar.finish_and_clear();
        }
    }
    Ok(sink.finish(&display).map_err(InputError::from)?)
}

/// Opens a file (gzip-decoded when it ends in `.gz`) or stdin, with a byte progress bar.
pub(crate) fn open(path: &str) -> anyhow::Result<(Box<dyn BufRead>, ProgressBar)> {
    if path == "-" {
        return Ok((Box::new(BufReader::with_capacity(1 << 16, io::stdin())), ProgressBar::hidden()));
    }
    let file = File::open(path).map_err(|e| InputError(format!("{path}: cannot open: {e}")))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress::bytes(len, &format!("reading {}", short_name(path)));
    let raw = bar.wrap_read(file);
    let reader: Box<dyn Read> = if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, raw)))
    } else {
        Box::new(raw)
    };
    Ok((Box::new(BufReader::with_capacity(1 << 16, reader)), bar))
}

fn short_name(path: &str) -> String {
    PathBuf::from(path).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}
