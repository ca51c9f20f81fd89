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

/// A free loopback address for a server started as a child process.
pub fn free_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

/// One plain HTTP/1.1 GET; `None` while nothing listens yet.
pub fn http_get(address: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write as _};
    let mut s = std::net::TcpStream::connect(address).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A running `anomalyd serve`, killed when dropped so that a failing test leaves no server
/// behind. Its stderr goes to a file: a pipe nobody reads could fill up and stall it.
pub struct Server {
    pub child: std::process::Child,
    pub address: String,
    log: PathBuf,
}

impl Server {
    /// Starts `anomalyd serve --listen <free address>` with what `configure` adds (flags,
    /// environment) and waits until `/readyz` answers 200, at most `ready_within`.
    pub fn start(
        configure: impl FnOnce(&mut Command),
        log: PathBuf,
        ready_within: std::time::Duration,
    ) -> Server {
        let address = free_address();
        let mut command = Command::new(env!("CARGO_BIN_EXE_anomalyd"));
        command.args(["serve", "--listen", &address]);
        configure(&mut command);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("binary starts");
        let mut server = Server { child, address, log };
        let deadline = std::time::Instant::now() + ready_within;
        while !http_get(&server.address, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("the server exited before it was ready ({status}):\n{}", server.stderr());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not ready within {ready_within:?}:\n{}",
                server.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        server
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to a child and returns its exit code and everything it wrote to stderr.
pub fn stop(mut child: std::process::Child, signal: &str) -> (Option<i32>, String) {
    use std::io::Read;
    let pid = child.id().to_string();
    assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code(), err)
}
