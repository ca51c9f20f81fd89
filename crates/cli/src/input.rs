//! Reading feature tables from CSV (optionally gzip), NDJSON and Parquet files or stdin.
//!
//! Everything is validated here, at the edge: the engine receives a [`Matrix`] whose values
//! are finite or NaN. Errors name the file, the row (1-based, data rows), and the column.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anomalyd_engine::Matrix;
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

/// Which columns to read.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Feature columns by name; `None` means every column except the label column.
    pub features: Option<Vec<String>>,
    /// Label column (1/true = anomaly); excluded from the features.
    pub label: Option<String>,
}

/// A validated feature table.
#[derive(Debug)]
pub struct Table {
    /// Feature values, row-major.
    pub matrix: Matrix,
    /// Feature names in column order.
    pub names: Vec<String>,
    /// Labels when a label column was selected.
    pub labels: Option<Vec<bool>>,
}

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
                read_csv(reader, &display, sel, &mut sink, path.ends_with(".tsv"))?;
            } else {
                read_ndjson(reader, &display, sel, &mut sink)?;
            }
            bar.finish_and_clear();
        }
    }
    sink.finish(&display)
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

/// Collects rows once the columns are resolved.
#[derive(Default)]
pub(crate) struct Sink {
    names: Vec<String>,
    values: Vec<f32>,
    labels: Option<Vec<bool>>,
}

impl Sink {
    pub(crate) fn set_columns(&mut self, names: Vec<String>, with_label: bool) {
        self.names = names;
        self.labels = with_label.then(Vec::new);
    }

    pub(crate) fn push_value(&mut self, v: f32) {
        self.values.push(v);
    }

    pub(crate) fn push_label(&mut self, l: bool) {
        if let Some(ls) = &mut self.labels {
            ls.push(l);
        }
    }

    fn finish(self, file: &str) -> anyhow::Result<Table> {
        if self.names.is_empty() {
            return input_err(format!("{file}: no feature columns to read"));
        }
        if self.values.is_empty() {
            return input_err(format!("{file}: no data rows"));
        }
        let matrix = Matrix::new(self.values, self.names.len(), &self.names)
            .map_err(|e| InputError(format!("{file}: {e}")))?;
        Ok(Table { matrix, names: self.names, labels: self.labels })
    }
}

/// Resolves the selection against the header: positions of the features and of the label.
pub(crate) fn resolve(
    header: &[String],
    sel: &Selection,
    file: &str,
) -> anyhow::Result<(Vec<usize>, Option<usize>)> {
    let find = |name: &str| header.iter().position(|h| h == name);
    let label = match &sel.label {
        None => None,
        Some(l) => match find(l) {
            Some(i) => Some(i),
            None => {
                return input_err(format!(
                    "{file}: label column `{l}` not found; columns are: {}",
                    header.join(", ")
                ));
            }
        },
    };
    let features = match &sel.features {
        Some(names) => {
            let mut idx = Vec::with_capacity(names.len());
            for n in names {
                match find(n) {
                    Some(i) if Some(i) == label => {
                        return input_err(format!(
                            "{file}: `{n}` is the label column and cannot also be a feature"
                        ));
                    }
                    Some(i) => idx.push(i),
                    None => {
                        return input_err(format!(
                            "{file}: unknown feature `{n}`; columns are: {}",
                            header.join(", ")
                        ));
                    }
                }
            }
            idx
        }
        None => (0..header.len()).filter(|&i| Some(i) != label).collect(),
    };
    Ok((features, label))
}

/// True for a cell that means "no value": empty, `NA`, `nan` (any case) or `null`.
pub(crate) fn is_missing(trimmed: &str) -> bool {
    trimmed.is_empty()
        || trimmed.eq_ignore_ascii_case("nan")
        || trimmed.eq_ignore_ascii_case("na")
        || trimmed == "null"
}

/// Parses one numeric cell. Empty, `NA`, `nan` and `null` are missing (NaN); ±inf and text are errors.
pub(crate) fn parse_number(cell: &str, file: &str, row: usize, column: &str) -> anyhow::Result<f32> {
    let t = cell.trim();
    if is_missing(t) {
        return Ok(f32::NAN);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && (v as f32).is_finite() => Ok(v as f32),
        Ok(v) if v.is_finite() => {
            input_err(format!("{file}: row {row}, column `{column}`: {t} is outside the f32 range"))
        }
        Ok(_) => {
            input_err(format!("{file}: row {row}, column `{column}`: infinite value `{t}` is not allowed"))
        }
        Err(_) => input_err(format!("{file}: row {row}, column `{column}`: `{t}` is not a number")),
    }
}

/// Parses a label cell: 1/true/yes/anomaly = anomaly, 0/false/no/normal = normal.
pub(crate) fn parse_label(cell: &str, file: &str, row: usize, column: &str) -> anyhow::Result<bool> {
    let t = cell.trim();
    match t.to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "anomaly" | "outlier" | "-1" => Ok(true),
        "0" | "0.0" | "false" | "no" | "normal" | "inlier" => Ok(false),
        _ => input_err(format!(
            "{file}: row {row}, label column `{column}`: `{t}` is not a label (use 1/0 or true/false)"
        )),
    }
}

fn read_csv(
    reader: Box<dyn BufRead>,
    file: &str,
    sel: &Selection,
    sink: &mut Sink,
    tsv: bool,
) -> anyhow::Result<()> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(if tsv { b'\t' } else { b',' })
        .flexible(true)
        .from_reader(reader);
    let header: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        Err(e) => return input_err(format!("{file}: cannot read the header: {e}")),
    };
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return input_err(format!("{file}: the file is empty (no header row)"));
    }
    let (features, label) = resolve(&header, sel, file)?;
    sink.set_columns(features.iter().map(|&i| header[i].clone()).collect(), label.is_some());
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return input_err(format!("{file}: row {}: {e}", row + 1)),
        }
        row += 1;
        if record.len() != header.len() {
            if record.len() == 1 && record[0].trim().is_empty() {
                row -= 1;
                continue; // a blank line
            }
            return input_err(format!(
                "{file}: row {row} (line {}): expected {} fields like the header, found {}",
                record.position().map(|p| p.line()).unwrap_or(0),
                header.len(),
                record.len()
            ));
        }
        for &i in &features {
            sink.push_value(parse_number(&record[i], file, row, &header[i])?);
        }
        if let Some(l) = label {
            sink.push_label(parse_label(&record[l], file, row, &header[l])?);
        }
    }
    Ok(())
}

fn read_ndjson(reader: Box<dyn BufRead>, file: &str, sel: &Selection, sink: &mut Sink) -> anyhow::Result<()> {
    let mut resolved: Option<(Vec<String>, Option<String>)> = None;
    let mut row = 0usize;
    for (line_no, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| InputError(format!("{file}: line {}: {e}", line_no + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        row += 1;
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&line) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                return input_err(format!(
                    "{file}: row {row} (line {}): expected a JSON object",
                    line_no + 1
                ));
            }
            Err(e) => {
                return input_err(format!("{file}: row {row} (line {}): malformed JSON: {e}", line_no + 1));
            }
        };
        if resolved.is_none() {
            let header: Vec<String> = obj.keys().cloned().collect();
            let (f, l) = resolve(&header, sel, file)?;
            let names: Vec<String> = f.iter().map(|&i| header[i].clone()).collect();
            sink.set_columns(names.clone(), l.is_some());
            resolved = Some((names, l.map(|i| header[i].clone())));
        }
        let (names, label) = resolved.as_ref().expect("resolved above");
        for name in names {
            let v = match obj.get(name) {
                None => return input_err(format!("{file}: row {row}: field `{name}` is missing")),
                Some(serde_json::Value::Null) => f32::NAN,
                Some(serde_json::Value::Number(n)) => {
                    let v = n.as_f64().unwrap_or(f64::NAN);
                    parse_number(&v.to_string(), file, row, name)?
                }
                Some(serde_json::Value::String(s)) => parse_number(s, file, row, name)?,
                Some(other) => {
                    return input_err(format!(
                        "{file}: row {row}, column `{name}`: expected a number, found {other}"
                    ));
                }
            };
            sink.push_value(v);
        }
        if let Some(l) = label {
            let cell = match obj.get(l) {
                Some(serde_json::Value::Bool(b)) => b.to_string(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => return input_err(format!("{file}: row {row}: label `{l}` is missing or not a number")),
            };
            sink.push_label(parse_label(&cell, file, row, l)?);
        }
    }
    if resolved.is_none() {
        return input_err(format!("{file}: the file is empty (no JSON rows)"));
    }
    Ok(())
}
