//! Fleet feature configuration (TOML): metrics and their rolling statistics, feature groups
//! with dependencies, derived features, rules, cohorts and stream settings.
//!
//! The file is parsed once and validated into [`FleetConfig`]: unknown names and cycles in
//! the group graph are errors that name them, and the groups are put in execution order
//! (dependencies first) once, so nothing is resolved per sample.
//!
//! ```toml
//! [stream]
//! tolerance_secs = 300      # samples up to 5 min out of order are re-ordered, later ones rejected
//! ewma_alpha = 0.3
//!
//! [[metrics]]
//! name = "battery_pct"
//! window = 24               # rolling window, in samples
//! stats = ["mean", "std", "min", "max", "last", "delta", "ewma", "zscore"]
//!
//! [[groups]]
//! name = "power"
//! metrics = ["battery_pct"]
//!
//! [[groups]]
//! name = "thermal"
//! metrics = ["battery_temp_c"]
//! depends_on = ["power"]
//! derived = [{ name = "temp_per_battery", op = "ratio", left = "battery_temp_c.mean", right = "battery_pct.mean" }]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use thiserror::Error;

/// A rolling statistic of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    /// Mean over the window.
    Mean,
    /// Sample standard deviation over the window (n − 1 in the denominator, like pandas).
    Std,
    /// Minimum over the window.
    Min,
    /// Maximum over the window.
    Max,
    /// The latest value.
    Last,
    /// Latest value minus the one before it.
    Delta,
    /// Exponentially weighted moving average over all samples so far.
    Ewma,
    /// (latest − window mean) / window std; 0 when the std is 0.
    Zscore,
}

impl Stat {
    /// Name used in feature names (`metric.stat`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stat::Mean => "mean",
            Stat::Std => "std",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Last => "last",
            Stat::Delta => "delta",
            Stat::Ewma => "ewma",
            Stat::Zscore => "zscore",
        }
    }
}

/// How a derived feature combines two features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DerivedOp {
    /// left / right (NaN when right is 0).
    Ratio,
    /// left − right.
    Diff,
    /// left × right.
    Product,
}

/// Errors in a fleet configuration; each names what is wrong.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConfigError {
    /// TOML syntax or type error (unknown keys are errors too).
    #[error("invalid fleet config: {0}")]
    Parse(String),
    /// A group lists a dependency that is not defined.
    #[error("group `{group}` depends on unknown group `{missing}`")]
    UnknownGroup {
        /// The group with the bad reference.
        group: String,
        /// The name that is not defined.
        missing: String,
    },
    /// The group dependencies form a cycle.
    #[error("feature groups form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A group, rule or derived feature names a metric that is not declared.
    #[error("{owner} refers to unknown metric `{metric}`")]
    UnknownMetric {
        /// Who refers to it.
        owner: String,
        /// The unknown metric.
        metric: String,
    },
    /// A derived feature refers to a feature outside its group and the groups it depends on.
    #[error(
        "derived feature `{name}` in group `{group}` refers to `{feature}`, which is neither in the group nor in a group it depends on"
    )]
    UnreachableFeature {
        /// The derived feature.
        name: String,
        /// Its group.
        group: String,
        /// The feature it cannot see.
        feature: String,
    },
    /// A value is out of range or a name is used twice.
    #[error("invalid fleet config: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    stream: RawStream,
    metrics: Vec<RawMetric>,
    #[serde(default)]
    groups: Vec<RawGroup>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
    #[serde(default)]
    cohorts: RawCohorts,
    #[serde(default)]
    model: RawModel,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    #[serde(default)]
    tolerance_secs: u64,
    #[serde(default = "default_alpha")]
    ewma_alpha: f64,
    #[serde(default = "default_pending")]
    max_pending: usize,
}

impl Default for RawStream {
    fn default() -> Self {
        Self { tolerance_secs: 0, ewma_alpha: default_alpha(), max_pending: default_pending() }
    }
}

fn default_alpha() -> f64 {
    0.3
}
fn default_pending() -> usize {
    256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: String,
    window: usize,
    stats: Vec<Stat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    derived: Vec<RawDerived>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerived {
    name: String,
    op: DerivedOp,
    left: String,
    right: String,
}

/// A heuristic detector declared in the config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleSpec {
    /// Fires when the latest value leaves [below, above].
    Threshold {
        /// Rule name, recorded in the anomaly's detectors.
        name: String,
        /// Metric watched.
        metric: String,
        /// Fires when the value is below this.
        below: Option<f64>,
        /// Fires when the value is above this.
        above: Option<f64>,
    },
    /// Fires when |Δvalue / Δt| exceeds `max_per_hour`.
    RateOfChange {
        /// Rule name.
        name: String,
        /// Metric watched.
        metric: String,
        /// Largest normal change per hour.
        max_per_hour: f64,
    },
    /// Fires when the metric has not changed for `samples` consecutive samples.
    FlatLine {
        /// Rule name.
        name: String,
        /// Metric watched.
        metric: String,
        /// Unchanged samples that make a flat line.
        samples: usize,
    },
    /// Fires when a device's sample arrives more than `max_gap_secs` after its previous one.
    MissingHeartbeat {
        /// Rule name.
        name: String,
        /// Largest normal gap between samples.
        max_gap_secs: u64,
    },
}

impl RuleSpec {
    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            RuleSpec::Threshold { name, .. }
            | RuleSpec::RateOfChange { name, .. }
            | RuleSpec::FlatLine { name, .. }
            | RuleSpec::MissingHeartbeat { name, .. } => name,
        }
    }

    /// The metric the rule watches (none for a missing heartbeat).
    pub fn metric(&self) -> Option<&str> {
        match self {
            RuleSpec::Threshold { metric, .. }
            | RuleSpec::RateOfChange { metric, .. }
            | RuleSpec::FlatLine { metric, .. } => Some(metric),
            RuleSpec::MissingHeartbeat { .. } => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCohorts {
    #[serde(default = "default_min_rows")]
    min_rows: usize,
}

impl Default for RawCohorts {
    fn default() -> Self {
        Self { min_rows: default_min_rows() }
    }
}

fn default_min_rows() -> usize {
    2_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    #[serde(default = "default_trees")]
    trees: usize,
    #[serde(default)]
    seed: u64,
    #[serde(default = "default_contamination")]
    contamination: f64,
}

impl Default for RawModel {
    fn default() -> Self {
        Self { trees: default_trees(), seed: 0, contamination: default_contamination() }
    }
}

fn default_trees() -> usize {
    100
}
fn default_contamination() -> f64 {
    0.01
}

/// One metric's rolling window and the statistics taken from it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// Metric name as it appears in telemetry.
    pub name: String,
    /// Window length in samples.
    pub window: usize,
    /// Statistics computed (each becomes a feature `name.stat` when a group uses the metric).
    pub stats: Vec<Stat>,
}

/// Where a feature's value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureSource {
    /// A rolling statistic of metric number `metric`.
    Rolling {
        /// Index into [`FleetConfig::metrics`].
        metric: usize,
        /// The statistic.
        stat: Stat,
    },
    /// Combination of two earlier features (indices into [`FleetConfig::features`]).
    Derived {
        /// The operation.
        op: DerivedOp,
        /// Left operand.
        left: usize,
        /// Right operand.
        right: usize,
    },
}

/// One model input column.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// `metric.stat` or the derived feature's name.
    pub name: String,
    /// How it is computed.
    pub source: FeatureSource,
    /// Group it belongs to.
    pub group: String,
}

/// A validated fleet configuration with groups resolved into execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Declared metrics.
    pub metrics: Vec<MetricSpec>,
    /// Group names in execution order (dependencies first).
    pub group_order: Vec<String>,
    /// Features in computation order; derived features only refer to earlier ones.
    pub features: Vec<FeatureSpec>,
    /// Heuristic detectors.
    pub rules: Vec<RuleSpec>,
    /// Index in `metrics` of each rule's metric (`None` for rules without one), resolved
    /// once so that applying a rule to a sample compares no names.
    pub rule_metrics: Vec<Option<usize>>,
    /// Out-of-order tolerance in milliseconds.
    pub tolerance_ms: i64,
    /// EWMA smoothing factor in (0, 1].
    pub ewma_alpha: f64,
    /// Most samples held for re-ordering per device.
    pub max_pending: usize,
    /// Rows a cohort needs for its own model.
    pub cohort_min_rows: usize,
    /// Trees per model.
    pub trees: usize,
    /// Seed of all models.
    pub seed: u64,
    /// Expected anomaly fraction used to set each model's threshold.
    pub contamination: f64,
    /// The TOML text it came from (kept in bundles so a model carries its features).
    pub source: String,
}

impl fmt::Display for FeatureSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FleetConfig {
    /// Names of the raw metrics that feature `feature` is computed from (a derived feature
    /// follows its operands), in config order without repeats.
    pub fn feature_metrics(&self, feature: usize) -> Vec<&str> {
        let mut seen = vec![false; self.metrics.len()];
        let mut stack = vec![feature];
        while let Some(f) = stack.pop() {
            match self.features.get(f).map(|spec| spec.source) {
                Some(FeatureSource::Rolling { metric, .. }) => seen[metric] = true,
                Some(FeatureSource::Derived { left, right, .. }) => stack.extend([left, right]),
                None => {}
            }
        }
        self.metrics.iter().zip(seen).filter(|(_, s)| *s).map(|(m, _)| m.name.as_str()).collect()
    }

    /// Index of the feature named `name`.
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name)
    }

    /// Parses and validates a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        validate(raw, text)
    }

    /// Index of a metric by name.
    pub fn metric_index(&self, name: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m.name == name)
    }

    /// Feature names in model order.
    pub fn feature_names(&self) -> Vec<String> {
        self.features.iter().map(|f| f.name.clone()).collect()
    }
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(msg.into()))
}

fn validate(raw: RawConfig, text: &str) -> Result<FleetConfig, ConfigError> {
    if raw.metrics.is_empty() {
        return invalid("declare at least one [[metrics]] entry");
    }
    let mut metric_index = HashMap::new();
    for (i, m) in raw.metrics.iter().enumerate() {
        if m.name.is_empty() || metric_index.insert(m.name.clone(), i).is_some() {
            return invalid(format!("metric name `{}` is empty or declared twice", m.name));
        }
        if !(1..=100_000).contains(&m.window) {
            return invalid(format!(
                "metric `{}`: window must be 1..=100000 samples, got {}",
                m.name, m.window
            ));
        }
        if m.stats.is_empty() {
            return invalid(format!("metric `{}`: list at least one statistic", m.name));
        }
    }
    if !(raw.stream.ewma_alpha > 0.0 && raw.stream.ewma_alpha <= 1.0) {
        return invalid(format!("stream.ewma_alpha must be in (0, 1], got {}", raw.stream.ewma_alpha));
    }
    if !(raw.model.contamination > 0.0 && raw.model.contamination <= 0.5) {
        return invalid(format!("model.contamination must be in (0, 0.5], got {}", raw.model.contamination));
    }
    if raw.model.trees == 0 || raw.stream.max_pending == 0 {
        return invalid("model.trees and stream.max_pending must be at least 1");
    }
    // Without groups, one implicit group holds every metric.
    let groups = if raw.groups.is_empty() {
        vec![RawGroup {
            name: "all".into(),
            metrics: raw.metrics.iter().map(|m| m.name.clone()).collect(),
            depends_on: Vec::new(),
            derived: Vec::new(),
        }]
    } else {
        raw.groups
    };
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        if by_name.insert(g.name.as_str(), i).is_some() {
            return invalid(format!("group `{}` is declared twice", g.name));
        }
    }
    for g in &groups {
        for dep in &g.depends_on {
            if !by_name.contains_key(dep.as_str()) {
                return Err(ConfigError::UnknownGroup { group: g.name.clone(), missing: dep.clone() });
            }
        }
        for m in &g.metrics {
            if !metric_index.contains_key(m) {
                return Err(ConfigError::UnknownMetric {
                    owner: format!("group `{}`", g.name),
                    metric: m.clone(),
                });
            }
        }
    }
    let order = topological_order(&groups, &by_name)?;

    // Features in group execution order; each group sees its own and its dependencies' features.
    let mut features: Vec<FeatureSpec> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut visible: Vec<Vec<String>> = vec![Vec::new(); groups.len()];
    for &gi in &order {
        let g = &groups[gi];
        let mut own: Vec<String> = Vec::new();
        for m in &g.metrics {
            let mi = metric_index[m];
            for &stat in &raw.metrics[mi].stats {
                let name = format!("{m}.{}", stat.as_str());
                if !index_of.contains_key(&name) {
                    index_of.insert(name.clone(), features.len());
                    features.push(FeatureSpec {
                        name: name.clone(),
                        source: FeatureSource::Rolling { metric: mi, stat },
                        group: g.name.clone(),
                    });
                }
                own.push(name);
            }
        }
        // Transitive closure: a dependency's visible features are visible here too.
        let mut sees: Vec<String> = own.clone();
        for dep in &g.depends_on {
            sees.extend(visible[by_name[dep.as_str()]].iter().cloned());
        }
        for dv in &g.derived {
            if index_of.contains_key(&dv.name) {
                return invalid(format!("feature name `{}` is used twice", dv.name));
            }
            let resolve = |f: &str| -> Result<usize, ConfigError> {
                if !sees.iter().any(|s| s == f) {
                    return Err(ConfigError::UnreachableFeature {
                        name: dv.name.clone(),
                        group: g.name.clone(),
                        feature: f.to_string(),
                    });
                }
                Ok(index_of[f])
            };
            let (left, right) = (resolve(&dv.left)?, resolve(&dv.right)?);
            index_of.insert(dv.name.clone(), features.len());
            features.push(FeatureSpec {
                name: dv.name.clone(),
                source: FeatureSource::Derived { op: dv.op, left, right },
                group: g.name.clone(),
            });
            sees.push(dv.name.clone());
        }
        visible[gi] = sees;
    }
    if features.is_empty() {
        return invalid("the groups select no features");
    }
    let mut rule_names = std::collections::HashSet::new();
    for r in &raw.rules {
        if !rule_names.insert(r.name().to_string()) || r.name() == "model" {
            return invalid(format!("rule name `{}` is used twice or reserved", r.name()));
        }
        if let Some(m) = r.metric()
            && !metric_index.contains_key(m)
        {
            return Err(ConfigError::UnknownMetric {
                owner: format!("rule `{}`", r.name()),
                metric: m.into(),
            });
        }
        match r {
            RuleSpec::Threshold { below: None, above: None, name, .. } => {
                return invalid(format!("rule `{name}`: give `below`, `above` or both"));
            }
            RuleSpec::FlatLine { samples, name, .. } if samples < &2 => {
                return invalid(format!("rule `{name}`: samples must be at least 2"));
            }
            _ => {}
        }
    }
    Ok(FleetConfig {
        metrics: raw
            .metrics
            .into_iter()
            .map(|m| MetricSpec { name: m.name, window: m.window, stats: m.stats })
            .collect(),
        group_order: order.iter().map(|&i| groups[i].name.clone()).collect(),
        features,
        rule_metrics: raw.rules.iter().map(|r| r.metric().map(|m| metric_index[m])).collect(),
        rules: raw.rules,
        tolerance_ms: (raw.stream.tolerance_secs.min(i64::MAX as u64 / 1000) * 1000) as i64,
        ewma_alpha: raw.stream.ewma_alpha,
        max_pending: raw.stream.max_pending,
        cohort_min_rows: raw.cohorts.min_rows,
        trees: raw.model.trees,
        seed: raw.model.seed,
        contamination: raw.model.contamination,
        source: text.to_string(),
    })
}

/// Depth-first topological sort; a back edge is reported as the cycle it closes.
fn topological_order(
    groups: &[RawGroup],
    by_name: &BTreeMap<&str, usize>,
) -> Result<Vec<usize>, ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        groups: &[RawGroup],
        by_name: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), ConfigError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = path.iter().position(|&p| p == i).expect("active groups are on the path");
                let mut cycle: Vec<String> = path[start..].iter().map(|&p| groups[p].name.clone()).collect();
                cycle.push(groups[i].name.clone());
                return Err(ConfigError::Cycle(cycle));
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        path.push(i);
        for dep in &groups[i].depends_on {
            visit(by_name[dep.as_str()], groups, by_name, marks, path, order)?;
        }
        path.pop();
        marks[i] = Mark::Done;
        order.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; groups.len()];
    let mut order = Vec::with_capacity(groups.len());
    for i in 0..groups.len() {
        visit(i, groups, by_name, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"
[[metrics]]
name = "battery_pct"
window = 24
stats = ["mean", "last"]
[[metrics]]
name = "temp_c"
window = 12
stats = ["max"]
"#;

    #[test]
    fn a_cycle_is_an_error_that_names_it() {
        let text = format!(
            "{METRICS}
[[groups]]
name = \"a\"
metrics = [\"battery_pct\"]
depends_on = [\"c\"]
[[groups]]
name = \"b\"
depends_on = [\"a\"]
[[groups]]
name = \"c\"
depends_on = [\"b\"]
"
        );
        let err = FleetConfig::from_toml(&text).unwrap_err();
        assert_eq!(err, ConfigError::Cycle(vec!["a".into(), "c".into(), "b".into(), "a".into()]));
        assert_eq!(err.to_string(), "feature groups form a cycle: a -> c -> b -> a");
        let self_loop = format!("{METRICS}\n[[groups]]\nname = \"s\"\ndepends_on = [\"s\"]\n");
        assert_eq!(
            FleetConfig::from_toml(&self_loop).unwrap_err().to_string(),
            "feature groups form a cycle: s -> s"
        );
    }

    #[test]
    fn an_unknown_group_is_an_error_that_names_it() {
        let text = format!(
            "{METRICS}\n[[groups]]\nname = \"power\"\nmetrics = [\"battery_pct\"]\ndepends_on = [\"thermal\"]\n"
        );
        let err = FleetConfig::from_toml(&text).unwrap_err();
        assert_eq!(err.to_string(), "group `power` depends on unknown group `thermal`");
    }

    #[test]
    fn groups_run_dependencies_first_and_derived_features_see_them() {
        let text = format!(
            "{METRICS}
[[groups]]
name = \"thermal\"
metrics = [\"temp_c\"]
depends_on = [\"power\"]
derived = [{{ name = \"temp_per_pct\", op = \"ratio\", left = \"temp_c.max\", right = \"battery_pct.mean\" }}]
[[groups]]
name = \"power\"
metrics = [\"battery_pct\"]
"
        );
        let cfg = FleetConfig::from_toml(&text).unwrap();
        assert_eq!(cfg.group_order, ["power", "thermal"]);
        assert_eq!(
            cfg.feature_names(),
            ["battery_pct.mean", "battery_pct.last", "temp_c.max", "temp_per_pct"]
        );
        assert_eq!(
            cfg.features[3].source,
            FeatureSource::Derived { op: DerivedOp::Ratio, left: 2, right: 0 }
        );
    }

    #[test]
    fn derived_features_cannot_reach_into_unrelated_groups() {
        let text = format!(
            "{METRICS}
[[groups]]
name = \"power\"
metrics = [\"battery_pct\"]
[[groups]]
name = \"thermal\"
metrics = [\"temp_c\"]
derived = [{{ name = \"x\", op = \"diff\", left = \"temp_c.max\", right = \"battery_pct.mean\" }}]
"
        );
        let err = FleetConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("`battery_pct.mean`") && err.contains("group `thermal`"), "{err}");
    }

    #[test]
    fn unknown_keys_metrics_and_bad_values_are_named() {
        let err =
            FleetConfig::from_toml(&format!("{METRICS}\n[stream]\ntolerance = 5\n")).unwrap_err().to_string();
        assert!(err.contains("tolerance"), "{err}");
        let err = FleetConfig::from_toml(&format!(
            "{METRICS}\n[[rules]]\nkind = \"threshold\"\nname = \"r\"\nmetric = \"nope\"\nabove = 1.0\n"
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(err, "rule `r` refers to unknown metric `nope`");
        let err = FleetConfig::from_toml("[[metrics]]\nname = \"a\"\nwindow = 0\nstats = [\"mean\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("window"), "{err}");
    }
}
