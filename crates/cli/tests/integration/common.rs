//! Running the `anomalyd` binary and making test files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// Runs `anomalyd args…` with optional stdin; progress bars are off (not a terminal anyway).
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = run(args, None);
    assert!(o.status.success(), "anomalyd {args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// Asserts exit code 2 with every `needle` in stderr.
pub fn input_error(args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) {
    let o = run(args, stdin);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "anomalyd {args:?}: expected exit 2, stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "anomalyd {args:?}: stderr lacks `{n}`: {err}");
    }
    assert!(!err.contains("panicked"), "no panic: {err}");
}

pub fn write(dir: &Path, name: &str, content: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_string()
}

/// Trains a small model on breastw in `dir` and returns its path.
pub fn small_model(dir: &Path) -> String {
    let model = dir.join("m.adm");
    let input = testdata().join("odds/breastw.csv");
    ok(&[
        "train",
        "--input",
        input.to_str().unwrap(),
        "--label-column",
        "label",
        "--trees",
        "50",
        "--seed",
        "3",
        "--output",
        model.to_str().unwrap(),
    ]);
    model.to_str().unwrap().to_string()
}

/// Parses the `anomaly_score` column of `score` CSV output.
pub fn scores(csv: &str) -> Vec<f32> {
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("anomaly_score,is_anomaly,grade,severity"));
    lines.map(|l| l.split(',').next().unwrap().parse().unwrap()).collect()
}
