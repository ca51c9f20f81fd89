//! Fleet pipeline: telemetry samples, streaming rolling features, rules and cohort models.

pub mod bundle;
pub mod config;
pub mod features;
pub mod json;
pub mod rolling;
pub mod sample;
pub mod simulate;

pub use bundle::{FleetBundle, FleetScore};
pub use config::{ConfigError, FleetConfig, RuleSpec, Stat};
pub use features::{DeviceState, FeatureRow, FeatureTable, NO_COHORT, Refused, RowRef, extract_all};
pub use sample::{Labels, MetricLayout, Sample, SampleError, Timestamp};
pub use simulate::{FaultEpisode, FaultKind, SimParams, simulate};
