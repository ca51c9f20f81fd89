//! CLI integration tests: the real binary on real files.

mod bad_input;
mod common;
mod formats;
mod workflow;
