//! CSV, gzip CSV, NDJSON, Parquet and stdin give the same scores.

use std::io::Write;
use std::sync::Arc;

use parquet::data_type::DoubleType;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::common::*;

/// breastw as (header, rows of f64 including the label).
fn breastw() -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(testdata().join("odds/breastw.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows = lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    (header, rows)
}

fn write_parquet(path: &std::path::Path, header: &[String], rows: &[Vec<f64>]) {
    let fields: String = header.iter().map(|h| format!("REQUIRED DOUBLE {h}; ")).collect();
    let schema = Arc::new(parse_message_type(&format!("message m {{ {fields} }}")).unwrap());
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build())).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut c = 0;
    while let Some(mut col) = group.next_column().unwrap() {
        let values: Vec<f64> = rows.iter().map(|r| r[c]).collect();
        col.typed::<DoubleType>().write_batch(&values, None, None).unwrap();
        col.close().unwrap();
        c += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn every_input_format_scores_identically() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let (header, rows) = breastw();
    let csv_path = testdata().join("odds/breastw.csv");
    let csv = std::fs::read(&csv_path).unwrap();
    let reference = ok(&["score", "-m", &model, "-i", csv_path.to_str().unwrap()]);
    assert_eq!(scores(&reference).len(), rows.len());

    let gz = dir.path().join("b.csv.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(&csv).unwrap();
    enc.finish().unwrap();
    assert_eq!(ok(&["score", "-m", &model, "-i", gz.to_str().unwrap()]), reference, "gzip CSV");

    let ndjson: String = rows
        .iter()
        .map(|r| {
            let obj: serde_json::Map<String, serde_json::Value> =
                header.iter().zip(r).map(|(h, v)| (h.clone(), serde_json::json!(v))).collect();
            format!("{}\n", serde_json::Value::Object(obj))
        })
        .collect();
    let nd = write(dir.path(), "b.ndjson", ndjson.as_bytes());
    assert_eq!(ok(&["score", "-m", &model, "-i", &nd]), reference, "NDJSON");

    let pq = dir.path().join("b.parquet");
    write_parquet(&pq, &header, &rows);
    assert_eq!(ok(&["score", "-m", &model, "-i", pq.to_str().unwrap()]), reference, "Parquet");

    let o = run(&["score", "-m", &model, "-i", "-"], Some(&csv));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), reference, "stdin");
}

#[test]
fn training_from_parquet_equals_training_from_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (header, rows) = breastw();
    let pq = dir.path().join("b.parquet");
    write_parquet(&pq, &header, &rows);
    let a = dir.path().join("a.adm");
    let b = dir.path().join("b.adm");
    let csv = testdata().join("odds/breastw.csv");
    ok(&["train", "-i", csv.to_str().unwrap(), "--label-column", "label", "-o", a.to_str().unwrap()]);
    ok(&["train", "-i", pq.to_str().unwrap(), "--label-column", "label", "-o", b.to_str().unwrap()]);
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn truncated_parquet_and_gzip_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (header, rows) = breastw();
    let pq = dir.path().join("b.parquet");
    write_parquet(&pq, &header, &rows);
    let bytes = std::fs::read(&pq).unwrap();
    let cut = write(dir.path(), "cut.parquet", &bytes[..bytes.len() - 40]);
    input_error(&["train", "-i", &cut, "-o", "/dev/null"], None, &["cut.parquet", "Parquet"]);
    let csv = std::fs::read(testdata().join("odds/breastw.csv")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&csv).unwrap();
    let gz = enc.finish().unwrap();
    let cut = write(dir.path(), "cut.csv.gz", &gz[..gz.len() / 2]);
    let o = run(&["train", "-i", &cut, "-o", "/dev/null"], None);
    assert_ne!(o.status.code(), Some(0), "a truncated gzip file is not accepted silently");
    assert!(stderr(&o).contains("cut.csv.gz"), "{}", stderr(&o));
}
