//! Engine integration tests: one binary, one module per area.

mod accuracy;
mod data;
mod determinism;
mod explanations;
mod fleet;
mod fuzz_regressions;
mod model_file;
