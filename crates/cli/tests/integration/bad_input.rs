//! Every kind of bad input gets a clear error naming file, row and column, and exit code 2.

use crate::common::*;

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "empty.csv", b"");
    input_error(&["train", "-i", &f, "-o", "/dev/null"], None, &["empty.csv", "empty"]);
    let f = write(dir.path(), "header_only.csv", b"a,b\n");
    input_error(&["train", "-i", &f, "-o", "/dev/null"], None, &["header_only.csv", "no data rows"]);
    let f = write(dir.path(), "empty.ndjson", b"\n\n");
    input_error(&["train", "-i", &f, "-o", "/dev/null"], None, &["empty.ndjson", "empty"]);
}

#[test]
fn ragged_csv_row() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ragged.csv", b"a,b,c\n1,2,3\n4,5\n6,7,8\n");
    input_error(
        &["train", "-i", &f, "-o", "/dev/null"],
        None,
        &["ragged.csv", "row 2", "expected 3 fields", "found 2"],
    );
}

#[test]
fn text_in_a_numeric_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "text.csv", b"a,b\n1,2\n3,oops\n");
    input_error(
        &["train", "-i", &f, "-o", "/dev/null"],
        None,
        &["text.csv", "row 2", "column `b`", "`oops` is not a number"],
    );
    let f = write(dir.path(), "text.ndjson", b"{\"a\":1,\"b\":2}\n{\"a\":true,\"b\":2}\n");
    input_error(
        &["train", "-i", &f, "-o", "/dev/null"],
        None,
        &["text.ndjson", "row 2", "column `a`", "expected a number"],
    );
    let f = write(dir.path(), "broken.ndjson", b"{\"a\":1}\n{\"a\":\n");
    input_error(&["train", "-i", &f, "-o", "/dev/null"], None, &["broken.ndjson", "row 2", "malformed JSON"]);
}

#[test]
fn infinity_is_rejected_and_nan_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "inf.csv", b"a,b\n1,2\n3,inf\n");
    input_error(
        &["train", "-i", &f, "-o", "/dev/null"],
        None,
        &["inf.csv", "row 2", "column `b`", "infinite"],
    );
    let f = write(dir.path(), "big.csv", b"a,b\n1,2\n3,1e39\n");
    input_error(
        &["train", "-i", &f, "-o", "/dev/null"],
        None,
        &["big.csv", "row 2", "column `b`", "f32 range"],
    );
    // NaN and empty cells are missing values: training succeeds and scores are finite.
    let rows: String = (0..200)
        .map(|i| format!("{},{}\n", i % 17, if i % 5 == 0 { "NaN".to_string() } else { (i % 7).to_string() }))
        .collect();
    let f = write(dir.path(), "nan.csv", format!("a,b\n{rows},\n").as_bytes());
    let model = dir.path().join("nan.adm");
    ok(&["train", "-i", &f, "-o", model.to_str().unwrap()]);
    let out = ok(&["score", "-m", model.to_str().unwrap(), "-i", &f]);
    let s = scores(&out);
    assert_eq!(s.len(), 201);
    assert!(s.iter().all(|v| v.is_finite() && *v > 0.0 && *v <= 1.0));
}

#[test]
fn unknown_feature_and_label_names() {
    let input = testdata().join("odds/glass.csv");
    let input = input.to_str().unwrap();
    input_error(
        &["train", "-i", input, "--features", "f0,nope", "-o", "/dev/null"],
        None,
        &["glass.csv", "unknown feature `nope`", "columns are: f0"],
    );
    input_error(
        &["train", "-i", input, "--label-column", "target", "-o", "/dev/null"],
        None,
        &["label column `target` not found"],
    );
    input_error(
        &["evaluate", "-i", input, "--label-column", "f0"],
        None,
        &["label column `f0`", "not a label"],
    );
}

#[test]
fn wrong_feature_count_at_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    // The model was trained on f0..f8; this file lacks f8.
    let f = write(dir.path(), "short.csv", b"f0,f1,f2,f3,f4,f5,f6,f7\n1,1,1,1,1,1,1,1\n");
    input_error(&["score", "-m", &model, "-i", &f], None, &["short.csv", "unknown feature `f8`"]);
    let f = write(dir.path(), "few.csv", b"f0,f1\n1,1\n");
    input_error(
        &["score", "-m", &model, "-i", &f, "--features", "f0,f1"],
        None,
        &["expects 9 features, 2 were selected"],
    );
}

#[test]
fn corrupt_truncated_and_foreign_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let bytes = std::fs::read(&model).unwrap();
    let input = testdata().join("odds/breastw.csv");
    let input = input.to_str().unwrap();
    let truncated = write(dir.path(), "truncated.adm", &bytes[..bytes.len() / 2]);
    input_error(&["score", "-m", &truncated, "-i", input], None, &["truncated.adm", "truncated"]);
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xFF;
    let corrupt = write(dir.path(), "corrupt.adm", &flipped);
    input_error(&["score", "-m", &corrupt, "-i", input], None, &["corrupt.adm", "corrupt", "checksum"]);
    let foreign = write(dir.path(), "foreign.adm", b"PK\x03\x04 this is a zip file");
    input_error(&["inspect", &foreign], None, &["foreign.adm", "not an anomalyd model"]);
    input_error(
        &["inspect", "/nonexistent/model.adm"],
        None,
        &["/nonexistent/model.adm", "cannot read model"],
    );
}

#[test]
fn usage_errors_exit_2_with_help() {
    let o = run(&["train", "--trees", "many"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid value 'many'"));
    let input = testdata().join("odds/glass.csv");
    input_error(
        &["train", "-i", input.to_str().unwrap(), "--max-features", "1.5", "-o", "/dev/null"],
        None,
        &["max_features", "(0, 1]"],
    );
    let o = run(&["train", "--contamination", "0.9"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("(0, 0.5]"));
}
