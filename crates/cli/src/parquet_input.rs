//! Parquet input through the `parquet` crate's row API (no Arrow: it keeps the build small).

use std::fs::File;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

use anomalyd_formats::table::{Selection, Sink, parse_label, resolve};
use anomalyd_formats::telemetry::{Columns, Interner};

use crate::input::InputError;

fn field_value(f: &Field) -> Option<f64> {
    Some(match f {
        Field::Null => f64::NAN,
        Field::Bool(b) => f64::from(u8::from(*b)),
        Field::Byte(v) => f64::from(*v),
        Field::Short(v) => f64::from(*v),
        Field::Int(v) => f64::from(*v),
        Field::Long(v) => *v as f64,
        Field::UByte(v) => f64::from(*v),
        Field::UShort(v) => f64::from(*v),
        Field::UInt(v) => f64::from(*v),
        Field::ULong(v) => *v as f64,
        Field::Float16(v) => f64::from(*v),
        Field::Float(v) => f64::from(*v),
        Field::Double(v) => *v,
        _ => return None,
    })
}

/// Opens a Parquet file and lists its top-level column names.
fn open(path: &Path, file: &str) -> anyhow::Result<(SerializedFileReader<File>, Vec<String>)> {
    let handle = File::open(path).map_err(|e| InputError(format!("{file}: cannot open: {e}")))?;
    let reader = SerializedFileReader::new(handle)
        .map_err(|e| InputError(format!("{file}: not a readable Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let header = schema.root_schema().get_fields().iter().map(|f| f.name().to_string()).collect();
    Ok((reader, header))
}

/// Reads the selected columns of a Parquet file into `sink`.
pub(crate) fn read(path: &Path, file: &str, sel: &Selection, sink: &mut Sink) -> anyhow::Result<()> {
    let (reader, header) = open(path, file)?;
    let (features, label) = resolve(&header, sel, file)?;
    sink.set_columns(features.iter().map(|&i| header[i].clone()).collect(), label.is_some());
    let rows = reader.get_row_iter(None).map_err(|e| InputError(format!("{file}: cannot read rows: {e}")))?;
    for (n, row) in rows.enumerate() {
        let row_no = n + 1;
        let row = row.map_err(|e| InputError(format!("{file}: row {row_no}: {e}")))?;
        let cols = row.get_column_iter().map(|(_, f)| f).collect::<Vec<_>>();
        for &i in &features {
            let Some(v) = cols.get(i).and_then(|f| field_value(f)) else {
                return Err(InputError(format!(
                    "{file}: row {row_no}, column `{}`: expected a number, found {}",
                    header[i],
                    cols.get(i).map(|f| f.to_string()).unwrap_or_else(|| "nothing".into())
                ))
                .into());
            };
            if v.is_infinite() || (v.is_finite() && !(v as f32).is_finite()) {
                return Err(InputError(format!(
                    "{file}: row {row_no}, column `{}`: value {v} is not finite in f32",
                    header[i]
                ))
                .into());
            }
            sink.push_value(v as f32);
        }
        if let Some(l) = label {
            let cell = match cols.get(l) {
                Some(Field::Str(s)) => s.clone(),
                Some(f) => field_value(f).map(|v| v.to_string()).unwrap_or_default(),
                None => String::new(),
            };
            sink.push_label(parse_label(&cell, file, row_no, &header[l])?);
        }
    }
    Ok(())
}

/// Reads a telemetry table (`device_id`, `ts`, `cohort`, `label.*`, metrics) from Parquet.
pub(crate) fn read_samples(path: &Path, file: &str) -> anyhow::Result<Vec<anomalyd_engine::fleet::Sample>> {
    let (reader, header) = open(path, file)?;
    let cols = Columns::resolve(&header, file)?;
    let rows = reader.get_row_iter(None).map_err(|e| InputError(format!("{file}: cannot read rows: {e}")))?;
    let mut out = Vec::new();
    let mut interner = Interner::default();
    for (n, row) in rows.enumerate() {
        let row_no = n + 1;
        let row = row.map_err(|e| InputError(format!("{file}: row {row_no}: {e}")))?;
        let cells: Vec<Option<String>> = row
            .get_column_iter()
            .map(|(_, f)| match f {
                Field::Null => None,
                Field::Str(s) => Some(s.clone()),
                Field::TimestampMillis(ms) => Some(ms.to_string()),
                other => field_value(other).map(|v| v.to_string()).or_else(|| Some(other.to_string())),
            })
            .collect();
        out.push(cols.sample(|i| cells.get(i).and_then(|c| c.as_deref()), &mut interner, file, row_no)?);
    }
    if out.is_empty() {
        return Err(InputError(format!("{file}: no data rows")).into());
    }
    Ok(out)
}
