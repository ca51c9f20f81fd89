//! Fleet pipeline: telemetry samples, streaming rolling features, rules and cohort models.

pub mod config;
pub mod rolling;

pub use config::{ConfigError, FleetConfig, Stat};
