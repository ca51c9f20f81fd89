//! Feature tables: a header (or the first JSON object's keys) names the columns, the
//! [`Selection`] picks the features and the label, and every cell is validated into an
//! `f32` (finite, or NaN for a missing value) before the engine sees it.

use std::io::BufRead;

use anomalyd_engine::Matrix;

use crate::{FormatError, Result, fail, is_missing};

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

/// Collects rows once the columns are resolved (each reader, Parquet's in the binary too,
/// fills one and [`Sink::finish`] turns it into a [`Table`]).
#[derive(Debug, Default)]
pub struct Sink {
    names: Vec<String>,
    values: Vec<f32>,
    labels: Option<Vec<bool>>,
}

impl Sink {
    /// Names the feature columns, in the order values will be pushed.
    pub fn set_columns(&mut self, names: Vec<String>, with_label: bool) {
        self.names = names;
        self.labels = with_label.then(Vec::new);
    }

    /// Appends the next value (row-major).
    pub fn push_value(&mut self, v: f32) {
        self.values.push(v);
    }

    /// Appends the current row's label (ignored when no label column was selected).
    pub fn push_label(&mut self, l: bool) {
        if let Some(ls) = &mut self.labels {
            ls.push(l);
        }
    }

    /// The table, or an error when it has no columns or no rows.
    pub fn finish(self, file: &str) -> Result<Table> {
        if self.names.is_empty() {
            return fail(format!("{file}: no feature columns to read"));
        }
        if self.values.is_empty() {
            return fail(format!("{file}: no data rows"));
        }
        let matrix = Matrix::new(self.values, self.names.len(), &self.names)
            .map_err(|e| FormatError(format!("{file}: {e}")))?;
        Ok(Table { matrix, names: self.names, labels: self.labels })
    }
}

/// Resolves the selection against the header: positions of the features and of the label.
pub fn resolve(header: &[String], sel: &Selection, file: &str) -> Result<(Vec<usize>, Option<usize>)> {
    let find = |name: &str| header.iter().position(|h| h == name);
    let label = match &sel.label {
        None => None,
        Some(l) => match find(l) {
            Some(i) => Some(i),
            None => {
                return fail(format!(
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
                        return fail(format!(
                            "{file}: `{n}` is the label column and cannot also be a feature"
                        ));
                    }
                    Some(i) => idx.push(i),
                    None => {
                        return fail(format!(
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

/// Parses one numeric cell. Empty, `NA`, `nan` and `null` are missing (NaN); ±inf and text are errors.
pub fn parse_number(cell: &str, file: &str, row: usize, column: &str) -> Result<f32> {
    let t = cell.trim();
    if is_missing(t) {
        return Ok(f32::NAN);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && (v as f32).is_finite() => Ok(v as f32),
        Ok(v) if v.is_finite() => {
            fail(format!("{file}: row {row}, column `{column}`: {t} is outside the f32 range"))
        }
        Ok(_) => fail(format!("{file}: row {row}, column `{column}`: infinite value `{t}` is not allowed")),
        Err(_) => fail(format!("{file}: row {row}, column `{column}`: `{t}` is not a number")),
    }
}

/// Parses a label cell: 1/true/yes/anomaly = anomaly, 0/false/no/normal = normal.
pub fn parse_label(cell: &str, file: &str, row: usize, column: &str) -> Result<bool> {
    let t = cell.trim();
    match t.to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "anomaly" | "outlier" | "-1" => Ok(true),
        "0" | "0.0" | "false" | "no" | "normal" | "inlier" => Ok(false),
        _ => fail(format!(
            "{file}: row {row}, label column `{column}`: `{t}` is not a label (use 1/0 or true/false)"
        )),
    }
}

/// Reads a CSV (or, with `tsv`, tab-separated) table with a header row into `sink`.
pub fn read_csv(reader: impl BufRead, file: &str, sel: &Selection, sink: &mut Sink, tsv: bool) -> Result<()> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(if tsv { b'\t' } else { b',' })
        .flexible(true)
        .from_reader(reader);
    let header: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        Err(e) => return fail(format!("{file}: cannot read the header: {e}")),
    };
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return fail(format!("{file}: the file is empty (no header row)"));
    }
    let (features, label) = resolve(&header, sel, file)?;
    sink.set_columns(features.iter().map(|&i| header[i].clone()).collect(), label.is_some());
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return fail(format!("{file}: row {}: {e}", row + 1)),
        }
        row += 1;
        if record.len() != header.len() {
            if record.len() == 1 && record[0].trim().is_empty() {
                row -= 1;
                continue; // a blank line
            }
            return fail(format!(
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

/// Reads one JSON object per line into `sink`; the first object's keys name the columns.
pub fn read_ndjson(reader: impl BufRead, file: &str, sel: &Selection, sink: &mut Sink) -> Result<()> {
    let mut resolved: Option<(Vec<String>, Option<String>)> = None;
    let mut row = 0usize;
    for (line_no, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| FormatError(format!("{file}: line {}: {e}", line_no + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        row += 1;
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&line) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                return fail(format!("{file}: row {row} (line {}): expected a JSON object", line_no + 1));
            }
            Err(e) => {
                return fail(format!("{file}: row {row} (line {}): malformed JSON: {e}", line_no + 1));
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
                None => return fail(format!("{file}: row {row}: field `{name}` is missing")),
                Some(serde_json::Value::Null) => f32::NAN,
                Some(serde_json::Value::Number(n)) => {
                    let v = n.as_f64().unwrap_or(f64::NAN);
                    parse_number(&v.to_string(), file, row, name)?
                }
                Some(serde_json::Value::String(s)) => parse_number(s, file, row, name)?,
                Some(other) => {
                    return fail(format!(
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
                _ => return fail(format!("{file}: row {row}: label `{l}` is missing or not a number")),
            };
            sink.push_label(parse_label(&cell, file, row, l)?);
        }
    }
    if resolved.is_none() {
        return fail(format!("{file}: the file is empty (no JSON rows)"));
    }
    Ok(())
}
