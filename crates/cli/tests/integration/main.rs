//! CLI integration tests: the real binary on real files.

mod bad_input;
mod common;
mod durability;
mod fleet;
mod formats;
mod workflow;
