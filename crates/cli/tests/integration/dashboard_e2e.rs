//! The web dashboard end to end: the real binary serving a seeded database with a model that
//! scores live telemetry, driven by `e2e/dashboard.mjs` (playwright-core from npm) in Debian's
//! headless chromium. The script checks the overview, filters, paging, keyboard use, triage
//! that survives a reload, live updates, both themes and phone size, and saves screenshots.
//!
//! Needs `chromium` (`apt-get install -y chromium`), `node` and `npm ci --prefix e2e`; the
//! test fails, saying what to install, when one is missing. `ANOMALYD_SCREENSHOTS=<dir>`
//! keeps the screenshots there (e.g. `docs/screenshots`); otherwise they go to a temporary
//! directory under the target dir. `CHROMIUM` overrides the browser's path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Server, http_get, ok};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Panics with what to install when a prerequisite is missing (never skips silently).
fn prerequisites() -> PathBuf {
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let mut missing = Vec::new();
    if !chromium.exists() {
        missing.push(format!("{} is missing: apt-get install -y chromium", chromium.display()));
    }
    if Command::new("node").arg("--version").output().map_or(true, |o| !o.status.success()) {
        missing.push("node is missing: apt-get install -y nodejs npm".to_string());
    }
    if !root().join("e2e/node_modules/playwright-core/package.json").exists() {
        missing.push("e2e/node_modules has no playwright-core: npm ci --prefix e2e".to_string());
    }
    assert!(missing.is_empty(), "the dashboard e2e test needs:\n  {}", missing.join("\n  "));
    chromium
}

/// A server on `data`, scoring with `model` if given; without API keys unless `keys` is set.
fn start_server(data: &Path, model: Option<&Path>, log: PathBuf, keys: bool) -> Server {
    let flags = |c: &mut Command| {
        if !keys {
            c.arg("--insecure-no-auth");
        }
        if let Some(model) = model {
            c.arg("--model").arg(model);
        }
        // The live step posts a device's first sample: let the model and rules flag it.
        c.arg("--data-dir").arg(data).env("ANOMALYD_INGEST_WARMUP", "0");
    };
    Server::start(flags, log, Duration::from_secs(30))
}

#[test]
fn dashboard_end_to_end_in_headless_chromium() {
    let chromium = prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let data = p("data");

    // 600 anomalies over 60 devices and the last two days: enough for several pages of each
    // severity and a populated chart.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    ok(&[
        "bench-api",
        "seed",
        "--data-dir",
        data.to_str().unwrap(),
        "--anomalies",
        "600",
        "--devices",
        "60",
        "--days",
        "2",
        "--end",
        &(now - 3_600_000).to_string(),
    ]);
    // A small bundle so live telemetry is scored and its rules fire.
    let fleet = p("fleet.csv");
    let config = p("fleet.toml");
    std::fs::write(
        &config,
        std::fs::read_to_string(root().join("config/fleet.toml"))
            .unwrap()
            .replace("min_rows = 5000", "min_rows = 2000"),
    )
    .unwrap();
    ok(&[
        "simulate",
        "--devices",
        "40",
        "--samples",
        "200",
        "--seed",
        "5",
        "--output",
        fleet.to_str().unwrap(),
    ]);
    let bundle = p("fleet.bundle");
    ok(&[
        "train",
        "--telemetry",
        fleet.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--output",
        bundle.to_str().unwrap(),
    ]);

    let server = start_server(&data, Some(&bundle), p("server.log"), false);
    let shots = std::env::var_os("ANOMALYD_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"),
        |d| root().join(d),
    );
    let stdout = node(&chromium, &server, "e2e/dashboard.mjs", &[shots.as_os_str()]);
    println!("screenshots: {}", shots.display());
    assert!(stdout.contains("e2e: all passed"), "{stdout}");
    for page in ["overview", "anomalies", "anomaly", "incident", "device", "models"] {
        for size in ["desktop", "phone"] {
            assert!(shots.join(format!("{page}-{size}.png")).exists(), "{page}-{size}.png saved");
        }
    }
}

/// Runs `node <script> <server url> <args…>` and returns its stdout; panics with both outputs
/// and the server's log when it fails.
fn node(chromium: &Path, server: &Server, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("node")
        .current_dir(root())
        .arg(script)
        .arg(format!("http://{}", server.address))
        .args(args)
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .output()
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        out.status,
        server.stderr()
    );
    stdout
}

/// A server that asks for keys: the shell's own advice creates the key the operator enters,
/// and `e2e/keys.mjs` checks the prompt, a refused key, a kept key, the read-only answer and
/// "Forget key".
#[test]
fn dashboard_asks_for_an_api_key_once_per_tab() {
    let chromium = prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&["bench-api", "seed", "--data-dir", data.to_str().unwrap(), "--anomalies", "50", "--devices", "5"]);
    let server = start_server(&data, None, dir.path().join("server.log"), true);

    // The command the key prompt tells the operator to run, run as told.
    let shell = http_get(&server.address, "/").expect("the shell is served");
    let advice = shell
        .split("<code id=\"key-command\">")
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .expect("the key prompt says how to create a key");
    let mut words: Vec<&str> = advice.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"anomalyd"), "{advice}");
    words.remove(0);
    words.extend(["--data-dir", data.to_str().unwrap()]);
    let key = ok(&words).trim().to_string();
    assert!(key.len() >= 40, "a key was printed: {key}");

    let stdout = node(&chromium, &server, "e2e/keys.mjs", &[std::ffi::OsStr::new(&key)]);
    assert!(stdout.contains("e2e-keys: all passed"), "{stdout}");
}
