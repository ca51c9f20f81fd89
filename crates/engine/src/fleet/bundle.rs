//! Fleet model bundle: the feature configuration, a global forest and one forest per
//! cohort with enough rows, in one versioned file (kind 2 of the model format).

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::config::FleetConfig;
use super::features::{FeatureRow, FeatureTable};
use crate::error::{EngineError, ModelFormatError, Result};
use crate::explain::Attribution;
use crate::format::{Reader, Writer, unwrap, wrap};
use crate::{Contamination, ForestParams, IsolationForest, Matrix, Severity};

/// `kind` of a fleet bundle file.
pub const KIND_BUNDLE: u16 = 2;

/// Everything needed to turn raw telemetry into scored anomalies.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetBundle {
    /// Feature configuration the models were trained with.
    pub config: FleetConfig,
    /// Model for every device.
    pub global: IsolationForest,
    /// Models for cohorts with at least `cohorts.min_rows` training rows.
    pub cohorts: BTreeMap<String, IsolationForest>,
}

/// One scored feature row.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetScore {
    /// Anomaly score of the model used.
    pub anomaly_score: f32,
    /// Grade under that model's calibration.
    pub grade: f32,
    /// Severity from the grade (raised to `high` when only rules fired).
    pub severity: Severity,
    /// Detectors that fired: `model` and/or rule names.
    pub detectors: Vec<String>,
    /// Which model scored the row: `global` or `cohort:<name>`.
    pub model: String,
    /// Top features (when requested).
    pub explanation: Vec<Attribution>,
}

impl FleetScore {
    /// True when any detector fired.
    pub fn is_anomaly(&self) -> bool {
        !self.detectors.is_empty()
    }
}

impl FleetBundle {
    /// Trains the global model and, in parallel, one model per cohort with enough rows.
    pub fn train(config: FleetConfig, table: &FeatureTable) -> Result<Self> {
        let names = config.feature_names();
        let d = names.len();
        if table.n_features != d {
            return Err(EngineError::FeatureCount { expected: d, got: table.n_features });
        }
        let params = ForestParams {
            n_trees: config.trees,
            seed: config.seed,
            contamination: Contamination::Fraction(config.contamination),
            ..Default::default()
        };
        let mut by_cohort: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for i in 0..table.len() {
            if let Some(c) = table.cohort(i) {
                by_cohort.entry(c).or_default().push(i);
            }
        }
        let eligible: Vec<(&str, Vec<usize>)> =
            by_cohort.into_iter().filter(|(_, rs)| rs.len() >= config.cohort_min_rows.max(2)).collect();
        let global = {
            let matrix = Matrix::new(table.values.clone(), d, &names)?;
            IsolationForest::fit(&matrix, names.clone(), &params)?
        };
        let cohorts = eligible
            .into_par_iter()
            .map(|(name, rows)| {
                let mut values = Vec::with_capacity(rows.len() * d);
                for &i in &rows {
                    values.extend_from_slice(&table.values[i * d..(i + 1) * d]);
                }
                let matrix = Matrix::new(values, d, &names)?;
                Ok((name.to_string(), IsolationForest::fit(&matrix, names.clone(), &params)?))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(FleetBundle { config, global, cohorts })
    }

    /// The model for a cohort (falling back to the global one) and its label.
    pub fn model_for(&self, cohort: Option<&str>) -> (&IsolationForest, String) {
        match cohort.and_then(|c| self.cohorts.get_key_value(c)) {
            Some((name, m)) => (m, format!("cohort:{name}")),
            None => (&self.global, "global".to_string()),
        }
    }

    /// Scores rows with their cohort's model; rules fired while computing the features are
    /// added to the detectors. `warmup` rows of each device (its windows are still filling)
    /// only report rules, never the model.
    pub fn score(&self, table: &FeatureTable, explain_top: Option<usize>, warmup: usize) -> Vec<FleetScore> {
        let mut seen = vec![0usize; table.device_names.len()];
        let position: Vec<usize> = table
            .device_idx
            .iter()
            .map(|&d| {
                seen[d as usize] += 1;
                seen[d as usize]
            })
            .collect();
        // Without explanations, rows are scored in batches per model (the batch kernel is
        // several times faster per row than one-row calls).
        let batch_scores = if explain_top.is_none() {
            self.batch_scores(table.len(), table.n_features, |i| table.cohort(i), |i| table.row(i).values)
        } else {
            vec![f32::NAN; table.len()]
        };
        (0..table.len())
            .into_par_iter()
            .map(|i| {
                let r = table.row(i);
                let (score, explanation) = match explain_top {
                    Some(k) => {
                        self.model_for(r.cohort).0.explain_row(r.values, k).unwrap_or((f32::NAN, Vec::new()))
                    }
                    None => (batch_scores[i], Vec::new()),
                };
                self.judge(r.cohort, score, explanation, r.rules_fired, position[i] > warmup)
            })
            .collect()
    }

    /// Scores feature rows of the streaming path in one pass, without explanations: rows
    /// of each model go through the batch kernel together. `may_flag[i]` is false while row
    /// `i`'s device is still warming up.
    pub fn score_rows(&self, rows: &[FeatureRow], may_flag: &[bool]) -> Vec<FleetScore> {
        let d = self.config.features.len();
        let scores = self.batch_scores(rows.len(), d, |i| rows[i].cohort.as_deref(), |i| &rows[i].values);
        rows.iter()
            .zip(scores)
            .zip(may_flag)
            .map(|((r, score), &flag)| {
                self.judge(r.cohort.as_deref(), score, Vec::new(), &r.rules_fired, flag)
            })
            .collect()
    }

    /// Scores of `n` rows, grouped by the model that scores them (NaN where a row does not
    /// fit the model).
    fn batch_scores<'a>(
        &self,
        n: usize,
        d: usize,
        cohort_of: impl Fn(usize) -> Option<&'a str>,
        values_of: impl Fn(usize) -> &'a [f32],
    ) -> Vec<f32> {
        let mut out = vec![f32::NAN; n];
        let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            let c = cohort_of(i).filter(|c| self.cohorts.contains_key(*c));
            groups.entry(c).or_default().push(i);
        }
        for (cohort, rows) in groups {
            let (model, _) = self.model_for(cohort);
            let mut values = Vec::with_capacity(rows.len() * d);
            for &i in &rows {
                values.extend_from_slice(values_of(i));
            }
            if let Ok(scores) = Matrix::new(values, d, &[]).and_then(|m| model.score_samples(&m)) {
                for (&i, s) in rows.iter().zip(scores) {
                    out[i] = s;
                }
            }
        }
        out
    }

    /// Scores one feature row (the online path): the cohort's model, its explanation, and
    /// the rules that fired while computing the features. `model_may_flag` is false while the
    /// device's windows are still filling.
    pub fn score_one(
        &self,
        cohort: Option<&str>,
        values: &[f32],
        rules_fired: &[usize],
        model_may_flag: bool,
        explain_top: usize,
    ) -> FleetScore {
        let model = self.model_for(cohort).0;
        // Without an explanation the plain walk is several times cheaper.
        let (score, explanation) = if explain_top == 0 {
            (model.score_row(values).unwrap_or(f32::NAN), Vec::new())
        } else {
            model.explain_row(values, explain_top).unwrap_or((f32::NAN, Vec::new()))
        };
        self.judge(cohort, score, explanation, rules_fired, model_may_flag)
    }

    /// Turns a score and the fired rules into detectors, grade and severity. Rules alone
    /// raise the severity to at least `high`: a rule fires only on a clear breach.
    fn judge(
        &self,
        cohort: Option<&str>,
        score: f32,
        explanation: Vec<crate::explain::Attribution>,
        rules_fired: &[usize],
        model_may_flag: bool,
    ) -> FleetScore {
        let (model, label) = self.model_for(cohort);
        let grade = model.calibration().grade(score);
        let mut detectors = Vec::new();
        if model_may_flag && model.is_anomaly(score) {
            detectors.push("model".to_string());
        }
        detectors.extend(rules_fired.iter().map(|&k| self.config.rules[k].name().to_string()));
        let mut severity = Severity::from_grade(grade);
        if !detectors.is_empty() && severity < Severity::High && !detectors.iter().any(|d| d == "model") {
            severity = Severity::High;
        }
        FleetScore { anomaly_score: score, grade, severity, detectors, model: label, explanation }
    }

    /// Serialises the bundle: configuration text, global model, cohort models.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let config = self.config.source.as_bytes();
        w.u32(config.len() as u32);
        w.buf.extend_from_slice(config);
        let put_model = |w: &mut Writer, m: &IsolationForest| {
            let bytes = m.to_bytes();
            w.u64(bytes.len() as u64);
            w.buf.extend_from_slice(&bytes);
        };
        put_model(&mut w, &self.global);
        w.u32(self.cohorts.len() as u32);
        for (name, m) in &self.cohorts {
            w.str(name);
            put_model(&mut w, m);
        }
        wrap(KIND_BUNDLE, &w.buf)
    }

    /// Loads a bundle with the same checks as a single model, plus: every model must use the
    /// configuration's features in its order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (kind, payload) = unwrap(bytes)?;
        if kind != KIND_BUNDLE {
            return Err(invalid(format!("file holds kind {kind}, not a fleet bundle (kind {KIND_BUNDLE})")));
        }
        let mut r = Reader::new(payload);
        let n = r.count("config byte", 1)?;
        let text = std::str::from_utf8(r.bytes(n)?).map_err(|_| invalid("configuration is not UTF-8"))?;
        let config =
            FleetConfig::from_toml(text).map_err(|e| invalid(format!("embedded configuration: {e}")))?;
        let names = config.feature_names();
        let get_model = |r: &mut Reader| -> Result<IsolationForest> {
            let len = r.u64()?;
            if len > r.remaining() as u64 {
                return Err(invalid("model length exceeds the file"));
            }
            let m = IsolationForest::from_bytes(r.bytes(len as usize)?)?;
            if m.feature_names() != names.as_slice() {
                return Err(invalid("a model's features differ from the configuration's"));
            }
            Ok(m)
        };
        let global = get_model(&mut r)?;
        let n_cohorts = r.count("cohort", 10)?;
        let mut cohorts = BTreeMap::new();
        for _ in 0..n_cohorts {
            let name = r.str()?;
            let m = get_model(&mut r)?;
            if cohorts.insert(name, m).is_some() {
                return Err(invalid("a cohort appears twice"));
            }
        }
        if r.remaining() != 0 {
            return Err(invalid("bytes left after the last cohort"));
        }
        Ok(FleetBundle { config, global, cohorts })
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::Model(ModelFormatError::Invalid(msg.into()))
}
