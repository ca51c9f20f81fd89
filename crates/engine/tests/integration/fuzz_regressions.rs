//! Replays the model files under `tests/fuzz_regressions/` through the loader.
//!
//! Each file is an input that once made `IsolationForest::from_bytes` misbehave (found by
//! the `model_loader` fuzz target, see `fuzz/README.md`) or a boundary case worth keeping.
//! The file name says what the loader must do with it:
//!
//! * `reject-*`: return an error, without panicking;
//! * `accept-*`: load, score a row, and re-encode to bytes that load again.
//!
//! Any other name fails the test, so every new file records its expected outcome. To add a
//! fuzzer crash, copy the minimised artifact (`cargo fuzz tmin ...`) here under a
//! `reject-<what>.adm` or `accept-<what>.adm` name.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use anomalyd_engine::IsolationForest;

fn regressions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

/// What the loader must do with one file.
enum Expect {
    Reject,
    Accept,
}

fn expectation(name: &str) -> Expect {
    if name.starts_with("reject-") {
        Expect::Reject
    } else if name.starts_with("accept-") {
        Expect::Accept
    } else {
        panic!("{name}: regression files must be named `reject-*` or `accept-*`");
    }
}

/// Loads `bytes` and checks the outcome; `Err` describes a violation.
fn replay(bytes: &[u8], expect: Expect) -> Result<(), String> {
    match (IsolationForest::from_bytes(bytes), expect) {
        (Err(_), Expect::Reject) => Ok(()),
        (Ok(_), Expect::Reject) => Err("was accepted, expected an error".into()),
        (Err(e), Expect::Accept) => Err(format!("was refused: {e}")),
        (Ok(model), Expect::Accept) => {
            let zeros = vec![0f32; model.n_features()];
            model.score_row(&zeros).map_err(|e| format!("cannot score a row of zeros: {e}"))?;
            let encoded = model.to_bytes();
            let reloaded = IsolationForest::from_bytes(&encoded)
                .map_err(|e| format!("re-encoded bytes are refused: {e}"))?;
            if reloaded != model {
                return Err("re-encoded model differs from the loaded one".into());
            }
            Ok(())
        }
    }
}

#[test]
fn fuzz_regression_inputs_never_panic_the_loader() {
    let mut entries: Vec<_> = std::fs::read_dir(regressions_dir())
        .expect("tests/fuzz_regressions exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no regression inputs found");

    let mut failures = Vec::new();
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expect = expectation(&name);
        let bytes = std::fs::read(path).unwrap();
        // Catch panics per file so that one report names every failing input.
        match catch_unwind(AssertUnwindSafe(|| replay(&bytes, expect))) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{name}: {why}")),
            Err(_) => failures.push(format!("{name}: the loader panicked")),
        }
    }
    assert!(failures.is_empty(), "fuzz regressions failed:\n{}", failures.join("\n"));
}
