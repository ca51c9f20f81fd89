//! The deterministic troubleshooting answer: the anomaly's explanation matched against a
//! rules table (built-in `config/troubleshoot.toml`, plus rules from the settings).
//!
//! Features are taken in order of their share of the score; each is matched through the raw
//! metrics behind it, then the heuristic detectors that fired are matched by name or by their
//! metric. A feature no rule covers gets a generic step naming its value, normal range and
//! direction. Same anomaly and rules, same answer.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{Attribution, Context, FiredRule};

/// The built-in rules table (`config/troubleshoot.toml`).
pub const BUILTIN_RULES: &str = include_str!("../../../../config/troubleshoot.toml");

/// Which side of the training median a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleDirection {
    /// Values above the median.
    Above,
    /// Values below the median.
    Below,
    /// Either side, or a missing value.
    #[default]
    Any,
}

/// One row of the rules table: what a metric out of range (or a detector firing) means and
/// what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TroubleshootRule {
    /// Raw metric the rule is about (as named in the telemetry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Or: the heuristic detector (a fleet-config rule name) the rule is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// Side of the median the metric's feature must be on (metric rules only).
    #[serde(default)]
    pub direction: RuleDirection,
    /// One sentence on the likely cause.
    pub summary: String,
    /// What to do, in order.
    pub steps: Vec<String>,
}

impl TroubleshootRule {
    /// Checks that the rule names exactly one metric or detector and says something.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.metric, &self.detector) {
            (Some(m), None) if !m.is_empty() => {}
            (None, Some(d)) if !d.is_empty() => {}
            _ => return Err("a rule names exactly one of `metric` or `detector`".into()),
        }
        if self.summary.trim().is_empty() || self.steps.iter().any(|s| s.trim().is_empty()) {
            return Err(format!("rule for `{}`: empty summary or step", self.subject()));
        }
        if self.steps.is_empty() {
            return Err(format!("rule for `{}`: no steps", self.subject()));
        }
        Ok(())
    }

    fn subject(&self) -> &str {
        self.metric.as_deref().or(self.detector.as_deref()).unwrap_or_default()
    }

    fn matches_metric(&self, metric: &str, direction: Option<RuleDirection>) -> bool {
        self.metric.as_deref() == Some(metric)
            && (self.direction == RuleDirection::Any || Some(self.direction) == direction)
    }
}

/// The built-in rules.
pub fn builtin_rules() -> Vec<TroubleshootRule> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        rules: Vec<TroubleshootRule>,
    }
    let table: Table = toml::from_str(BUILTIN_RULES).expect("the shipped rules table parses");
    table.rules
}

/// One part of an answer, in answer order.
pub(crate) enum Finding<'a> {
    /// A rule matched a feature or a detector.
    Rule(&'a TroubleshootRule),
    /// A feature no rule covers.
    Feature(&'a Attribution),
    /// A detector that fired, which no rule covers.
    Detector(&'a FiredRule),
}

/// What the anomaly matches, in answer order, each rule once.
pub(crate) fn findings<'a>(rules: &'a [TroubleshootRule], ctx: &'a Context) -> Vec<Finding<'a>> {
    let mut out = Vec::new();
    let mut used: HashSet<usize> = HashSet::new();
    let mut add = move |out: &mut Vec<Finding<'a>>, i: usize| {
        if used.insert(i) {
            out.push(Finding::Rule(&rules[i]));
        }
    };
    for f in &ctx.features {
        let mut matched = false;
        for m in &f.metrics {
            // First match wins, so rules from the settings (listed first) override built-ins.
            if let Some(i) = rules.iter().position(|r| r.matches_metric(m, f.direction)) {
                matched = true;
                add(&mut out, i);
            }
        }
        if !matched {
            out.push(Finding::Feature(f));
        }
    }
    for d in &ctx.fired {
        let by_name = rules.iter().position(|r| r.detector.as_deref() == Some(d.name.as_str()));
        let by_metric = || {
            let m = d.metric.as_deref()?;
            rules.iter().position(|r| r.matches_metric(m, d.direction))
        };
        match by_name.or_else(by_metric) {
            Some(i) => add(&mut out, i),
            None => out.push(Finding::Detector(d)),
        }
    }
    out
}

/// A number as people read it: at most two decimals, no trailing zeros.
pub(crate) fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// "battery_temp_c.max = 61.2, above its normal range 31–40".
pub(crate) fn describe(f: &Attribution) -> String {
    let Some(value) = f.value else {
        return format!("{} is missing", f.feature);
    };
    let side = match f.direction {
        Some(RuleDirection::Above) => "above",
        Some(RuleDirection::Below) => "below",
        _ => "off",
    };
    match (f.normal_low, f.normal_high) {
        (Some(lo), Some(hi)) => {
            format!("{} = {}, {side} its normal range {}–{}", f.feature, num(value), num(lo), num(hi))
        }
        _ => format!("{} = {}, {side} its median", f.feature, num(value)),
    }
}

fn feature_step(f: &Attribution) -> String {
    if f.value.is_none() {
        let metrics = if f.metrics.is_empty() { f.feature.clone() } else { f.metrics.join(", ") };
        return format!(
            "Check that the device still reports {metrics}: {} is missing, and the model flagged its absence.",
            f.feature
        );
    }
    format!(
        "Check {} (share of the score {}): compare it with the device's recent samples and with other \
         devices of its cohort to tell a device fault from a fleet-wide change.",
        describe(f),
        num(f.weight)
    )
}

fn detector_step(d: &FiredRule) -> String {
    match &d.metric {
        Some(m) => format!(
            "Rule `{}` fired on {m}: review the device's recent {m} samples in the incident's evidence.",
            d.name
        ),
        None => {
            format!("Rule `{}` fired: review the device's recent samples in the incident's evidence.", d.name)
        }
    }
}

/// The deterministic answer: (summary, steps).
pub(crate) fn answer(rules: &[TroubleshootRule], ctx: &Context) -> (String, Vec<String>) {
    let found = findings(rules, ctx);
    let mut summary = format!("{} anomaly on device {}", capitalised(&ctx.severity), ctx.device_id);
    if let Some(c) = &ctx.cohort {
        summary.push_str(&format!(" (cohort {c})"));
    }
    match ctx.features.first() {
        Some(top) => summary.push_str(&format!(": {}.", describe(top))),
        None if !ctx.fired.is_empty() => {
            let names: Vec<&str> = ctx.fired.iter().map(|d| d.name.as_str()).collect();
            summary.push_str(&format!(": rules fired: {}.", names.join(", ")));
        }
        None => summary.push('.'),
    }
    if let Some(Finding::Rule(r)) = found.iter().find(|f| matches!(f, Finding::Rule(_))) {
        summary.push(' ');
        summary.push_str(&r.summary);
    }
    let mut steps: Vec<String> = Vec::new();
    for f in &found {
        match f {
            Finding::Rule(r) => steps.extend(r.steps.iter().cloned()),
            Finding::Feature(a) => steps.push(feature_step(a)),
            Finding::Detector(d) => steps.push(detector_step(d)),
        }
    }
    let mut seen = HashSet::new();
    steps.retain(|s| seen.insert(s.clone()));
    if steps.is_empty() {
        steps.push(
            "Review the device's recent telemetry and the incident's evidence for the values that changed."
                .into(),
        );
    }
    (summary, steps)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(feature: &str, metric: &str, weight: f64, direction: RuleDirection) -> Attribution {
        Attribution {
            feature: feature.into(),
            weight,
            direction: Some(direction),
            value: Some(61.2),
            normal_low: Some(31.0),
            normal_high: Some(40.5),
            metrics: vec![metric.into()],
        }
    }

    fn ctx(features: Vec<Attribution>, fired: Vec<FiredRule>) -> Context {
        Context {
            anomaly_id: 1,
            device_id: "dev-1".into(),
            cohort: Some("tc52".into()),
            ts: 0,
            anomaly_score: 0.7,
            grade: 0.99,
            severity: "high".into(),
            model_version: Some("v1/global".into()),
            signature: "model|battery_temp_c".into(),
            features,
            fired,
        }
    }

    #[test]
    fn the_shipped_rules_are_valid_and_cover_the_fleet_metrics() {
        let rules = builtin_rules();
        for r in &rules {
            r.validate().unwrap();
        }
        let config = anomalyd_engine::fleet::FleetConfig::from_toml(crate::DEFAULT_FLEET_CONFIG).unwrap();
        for m in &config.metrics {
            assert!(rules.iter().any(|r| r.metric.as_deref() == Some(&m.name)), "no rule for {}", m.name);
        }
        for r in &rules {
            if let Some(m) = &r.metric {
                assert!(config.metric_index(m).is_some(), "rule for unknown metric {m}");
            }
            if let Some(d) = &r.detector {
                assert!(config.rules.iter().any(|c| c.name() == d), "rule for unknown detector {d}");
            }
        }
    }

    #[test]
    fn rules_match_metric_and_direction_in_weight_order() {
        let rules = builtin_rules();
        let c = ctx(
            vec![
                attr("cpu_pct.max", "cpu_pct", 0.5, RuleDirection::Above),
                attr("battery_temp_c.max", "battery_temp_c", 0.3, RuleDirection::Above),
                attr("signal_dbm.mean", "signal_dbm", 0.2, RuleDirection::Above),
            ],
            vec![],
        );
        let found = findings(&rules, &c);
        assert_eq!(found.len(), 3);
        let Finding::Rule(first) = found[0] else { panic!("cpu rule expected") };
        assert_eq!(first.metric.as_deref(), Some("cpu_pct"));
        let Finding::Rule(second) = found[1] else { panic!("temperature rule expected") };
        assert_eq!(
            (second.metric.as_deref(), second.direction),
            (Some("battery_temp_c"), RuleDirection::Above)
        );
        // A strong signal is only a problem below the median: no rule, a generic step.
        assert!(matches!(found[2], Finding::Feature(f) if f.feature == "signal_dbm.mean"));

        let (summary, steps) = answer(&rules, &c);
        assert!(
            summary.starts_with("High anomaly on device dev-1 (cohort tc52): cpu_pct.max = 61.2"),
            "{summary}"
        );
        assert!(summary.contains(&first.summary), "{summary}");
        assert_eq!(steps[0], first.steps[0]);
        assert!(steps.iter().any(|s| s == &second.steps[0]));
        let generic = steps.last().unwrap();
        assert!(generic.contains("signal_dbm.mean = 61.2, above its normal range 31–40.5"), "{generic}");
        assert_eq!(answer(&rules, &c), (summary, steps), "deterministic");
    }

    #[test]
    fn detectors_match_by_name_then_by_metric_and_each_rule_counts_once() {
        let rules = builtin_rules();
        let c = ctx(
            vec![attr("battery_temp_c.last", "battery_temp_c", 0.6, RuleDirection::Above)],
            vec![
                FiredRule {
                    name: "battery_overheat".into(),
                    metric: Some("battery_temp_c".into()),
                    direction: Some(RuleDirection::Above),
                },
                FiredRule { name: "missing_heartbeat".into(), metric: None, direction: None },
                FiredRule { name: "site_rule".into(), metric: Some("door_open".into()), direction: None },
            ],
        );
        let found = findings(&rules, &c);
        // The overheat detector maps to the temperature rule already found for the feature.
        assert_eq!(found.len(), 3, "temperature rule, heartbeat rule, unknown detector");
        assert!(matches!(found[1], Finding::Rule(r) if r.detector.as_deref() == Some("missing_heartbeat")));
        assert!(matches!(found[2], Finding::Detector(d) if d.name == "site_rule"));
        let (_, steps) = answer(&rules, &c);
        assert!(steps.last().unwrap().contains("`site_rule` fired on door_open"));
    }

    #[test]
    fn rules_listed_first_win_and_missing_values_match_only_any() {
        let mine = TroubleshootRule {
            metric: Some("battery_temp_c".into()),
            detector: None,
            direction: RuleDirection::Any,
            summary: "Site policy.".into(),
            steps: vec!["Call the site lead.".into()],
        };
        let mut rules = vec![mine.clone()];
        rules.extend(builtin_rules());
        let c = ctx(vec![attr("battery_temp_c.max", "battery_temp_c", 1.0, RuleDirection::Above)], vec![]);
        assert_eq!(answer(&rules, &c).1[0], "Call the site lead.");

        let mut missing = attr("mem_pct.last", "mem_pct", 1.0, RuleDirection::Above);
        missing.direction = None;
        missing.value = None;
        let (summary, steps) = answer(&builtin_rules(), &ctx(vec![missing], vec![]));
        assert!(summary.contains("mem_pct.last is missing"), "{summary}");
        assert!(steps[0].contains("still reports mem_pct"), "{steps:?}");
    }

    #[test]
    fn invalid_rules_are_refused() {
        let base = TroubleshootRule {
            metric: Some("x".into()),
            detector: None,
            direction: RuleDirection::Any,
            summary: "s".into(),
            steps: vec!["do".into()],
        };
        assert!(base.validate().is_ok());
        assert!(TroubleshootRule { detector: Some("d".into()), ..base.clone() }.validate().is_err());
        assert!(TroubleshootRule { metric: None, ..base.clone() }.validate().is_err());
        assert!(TroubleshootRule { steps: vec![], ..base.clone() }.validate().is_err());
        assert!(TroubleshootRule { summary: " ".into(), ..base }.validate().is_err());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(61.2000007), "61.2");
        assert_eq!(num(-70.0), "-70");
        assert_eq!(num(0.123456), "0.12");
        assert_eq!(num(-0.001), "0");
    }
}
