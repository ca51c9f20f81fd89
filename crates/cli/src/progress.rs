//! Progress bars on stderr, hidden when stderr is not a terminal (pipes, CI logs).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

fn visible() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("ANOMALYD_NO_PROGRESS").is_none()
}

fn bar(total: u64, template: &'static str, msg: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(template).expect("static template").progress_chars("=> "));
    bar.set_message(msg.to_string());
    bar
}

/// A bar counting bytes read, for file input.
pub fn bytes(total: u64, msg: &str) -> ProgressBar {
    bar(total, "{msg:20} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})", msg)
}

/// A bar counting steps (seeds, batches).
pub fn steps(total: u64, msg: &str) -> ProgressBar {
    bar(total, "{msg:20} [{bar:30}] {pos}/{len} ({elapsed})", msg)
}

/// A spinner for work of unknown length.
pub fn spinner(msg: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_message(msg.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}
