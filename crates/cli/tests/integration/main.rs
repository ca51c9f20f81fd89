//! CLI integration tests: the real binary on real files.

mod bad_input;
mod common;
mod dashboard_e2e;
mod durability;
mod fleet;
mod formats;
mod workflow;
