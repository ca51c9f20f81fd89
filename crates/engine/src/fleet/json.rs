//! Telemetry samples from JSON objects — the format of NDJSON files and of the HTTP ingest
//! API: `{"device_id", "ts", "metrics": {…}, "cohort", "labels": {…}}`, unknown fields
//! rejected, errors naming the field.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::sample::{Labels, MetricLayout, Sample, Timestamp};

/// Hands out one shared copy of each distinct string (device ids, cohorts) and of each
/// device's labels, so that millions of samples do not each allocate their own.
#[derive(Default)]
pub struct Interner {
    strings: foldhash::HashMap<String, Arc<str>>,
    labels: foldhash::HashMap<Arc<str>, Labels>,
    layouts: foldhash::HashMap<Vec<String>, MetricLayout>,
    /// The layout handed out last: consecutive samples nearly always share one, and
    /// comparing names against it needs no allocation.
    last_layout: Option<MetricLayout>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn string(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(s.to_string(), a.clone());
        a
    }

    /// The shared layout for these metric names (validated the first time they are seen).
    pub fn layout(&mut self, names: &[&str]) -> Result<MetricLayout, String> {
        if let Some(l) = &self.last_layout
            && l.names().len() == names.len()
            && l.names().iter().zip(names).all(|(a, b)| **a == **b)
        {
            return Ok(l.clone());
        }
        let key: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        if let Some(l) = self.layouts.get(&key) {
            self.last_layout = Some(l.clone());
            return Ok(l.clone());
        }
        let layout =
            MetricLayout::new(names.iter().map(|n| self.string(n)).collect()).map_err(|e| e.to_string())?;
        self.layouts.insert(key, layout.clone());
        self.last_layout = Some(layout.clone());
        Ok(layout)
    }

    /// The device's labels from (key, value) pairs; allocates only when they changed.
    pub fn labels_from<'a>(
        &mut self,
        device: &Arc<str>,
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Labels {
        if let Some(l) = self.labels.get(device) {
            let same = l.len() == pairs.clone().count()
                && pairs.clone().all(|(k, v)| l.get(k).is_some_and(|x| x == v));
            if same {
                return l.clone();
            }
        }
        let map: BTreeMap<String, String> = pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.labels(device, map)
    }

    /// The device's labels, reusing the previous copy when they are unchanged.
    pub fn labels(&mut self, device: &Arc<str>, labels: BTreeMap<String, String>) -> Labels {
        match self.labels.get(device) {
            Some(l) if **l == labels => l.clone(),
            _ => {
                let l = Arc::new(labels);
                self.labels.insert(device.clone(), l.clone());
                l
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSample {
    device_id: String,
    ts: serde_json::Value,
    metrics: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    cohort: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Validates one JSON sample object (shared by NDJSON files and, later, the HTTP API).
pub fn sample_from_json(value: serde_json::Value, interner: &mut Interner) -> Result<Sample, String> {
    let s: JsonSample = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let ts = match &s.ts {
        serde_json::Value::Number(n) => {
            n.as_i64().map(Timestamp).ok_or("field `ts`: expected integer milliseconds")?
        }
        serde_json::Value::String(t) => Timestamp::parse(t).map_err(|e| e.to_string())?,
        _ => return Err("field `ts`: expected an RFC 3339 string or integer milliseconds".into()),
    };
    let names: Vec<&str> = s.metrics.keys().map(String::as_str).collect();
    let layout = interner.layout(&names)?;
    let mut metrics = Vec::with_capacity(s.metrics.len());
    for (k, v) in &s.metrics {
        match v.as_f64() {
            Some(x) if x.is_finite() => metrics.push(x),
            _ => return Err(format!("field `metrics.{k}`: expected a finite number, found {v}")),
        }
    }
    let device = interner.string(&s.device_id);
    let labels = interner.labels(&device, s.labels);
    let cohort = s.cohort.map(|c| interner.string(&c));
    Sample::new(device, ts, layout, metrics, cohort, labels).map_err(|e| e.to_string())
}

// ---- Fast path -------------------------------------------------------------------------
//
// The checked path above goes through a `serde_json::Value` tree: every sample becomes a map
// of boxed values before it is looked at, which profiling showed to be about a quarter of the
// server's CPU time at ingest. The types below decode a sample straight from the request
// text, borrowing strings that hold no escapes. They accept only what the checked path
// accepts and refuse everything else, so the caller can fall back to the checked path for
// its error message: a valid sample gives the same `Sample` both ways (tested).

/// A string from the input: borrowed when it has no escapes.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// `ts`: integer milliseconds or RFC 3339 text; anything else is refused.
enum Time<'a> {
    Ms(i64),
    Text(Text<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Time<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Time<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("integer milliseconds or an RFC 3339 string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Time::Ms(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(Time::Ms).map_err(|_| E::custom("ts out of range"))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Time::Text(Text(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Time::Text(Text(Cow::Owned(v.to_string()))))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A metric value: any JSON number; anything else is refused.
struct Number(f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Number(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastSample<'a> {
    #[serde(borrow)]
    device_id: Text<'a>,
    #[serde(borrow)]
    ts: Time<'a>,
    #[serde(borrow)]
    metrics: BTreeMap<Text<'a>, Number>,
    #[serde(default, borrow)]
    cohort: Option<Text<'a>>,
    #[serde(default, borrow)]
    labels: BTreeMap<Text<'a>, Text<'a>>,
}

impl FastSample<'_> {
    fn into_sample(self, interner: &mut Interner) -> Option<Sample> {
        let ts = match self.ts {
            Time::Ms(ms) => Timestamp(ms),
            Time::Text(t) => Timestamp::parse(&t.0).ok()?,
        };
        let names: Vec<&str> = self.metrics.keys().map(|k| k.0.as_ref()).collect();
        let layout = interner.layout(&names).ok()?;
        let metrics: Vec<f64> = self.metrics.values().map(|v| v.0).collect();
        if metrics.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let device = interner.string(&self.device_id.0);
        let labels =
            interner.labels_from(&device, self.labels.iter().map(|(k, v)| (k.0.as_ref(), v.0.as_ref())));
        let cohort = self.cohort.map(|c| interner.string(&c.0));
        Sample::new(device, ts, layout, metrics, cohort, labels).ok()
    }
}

/// The samples of a JSON array, decoded straight from the text; `None` when anything in it
/// is not a valid sample (then [`sample_from_json`] on each element says what and where).
pub fn samples_from_json_array(text: &[u8], interner: &mut Interner) -> Option<Vec<Sample>> {
    let raw: Vec<FastSample<'_>> = serde_json::from_slice(text).ok()?;
    raw.into_iter().map(|s| s.into_sample(interner)).collect()
}

/// One sample object decoded straight from the text; `None` when it is not a valid sample
/// (then [`sample_from_json`] says why).
pub fn sample_from_json_text(text: &str, interner: &mut Interner) -> Option<Sample> {
    serde_json::from_str::<FastSample<'_>>(text).ok()?.into_sample(interner)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn slow(text: &str) -> Option<Sample> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        sample_from_json(v, &mut Interner::default()).ok()
    }

    /// JSON text for a field value: valid choices and the usual mistakes.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            (-1_000_000_000_000_i64..2_000_000_000_000).prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{x:?}")),
            Just("\"2026-11-26T10:00:00Z\"".to_string()),
            Just("\"2026-11-26 10:00\"".to_string()),
            Just("\"esc\\\\aped\\u00e9\"".to_string()),
            Just("\"tc52\"".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("18446744073709551615".to_string()),
            Just("1e3".to_string()),
            Just("[1]".to_string()),
            Just("{\"a\":\"b\"}".to_string()),
            Just("{}".to_string()),
        ]
    }

    fn metrics() -> impl Strategy<Value = String> {
        prop::collection::vec((prop_oneof![Just("cpu"), Just("mem"), Just("t\\u00e9mp")], value()), 0..4)
            .prop_map(|m| {
                format!("{{{}}}", m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(","))
            })
    }

    fn object() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("device_id"),
            Just("ts"),
            Just("metrics"),
            Just("cohort"),
            Just("labels"),
            Just("extra")
        ];
        let join = |fields: Vec<(&str, String)>| {
            format!(
                "{{{}}}",
                fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",")
            )
        };
        let anything = prop::collection::vec((key, prop_oneof![value(), metrics()]), 0..7).prop_map(join);
        // Mostly well-formed: the three required fields, then optional ones, any values.
        let shaped = (value(), value(), metrics(), prop::option::of(value()), prop::option::of(value()))
            .prop_map(move |(device, ts, metrics, cohort, labels)| {
                let mut f = vec![("device_id", device), ("ts", ts), ("metrics", metrics)];
                f.extend(cohort.map(|c| ("cohort", c)));
                f.extend(labels.map(|l| ("labels", l)));
                join(f)
            });
        prop_oneof![anything, shaped]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// The fast path accepts exactly what the checked path accepts, with the same result.
        #[test]
        fn the_fast_path_agrees_with_the_checked_path(text in object()) {
            let fast = sample_from_json_text(&text, &mut Interner::default());
            let checked = slow(&text);
            // Duplicate keys: the checked path keeps the last, the typed one refuses (and the
            // caller then takes the checked path); everything else must agree both ways.
            if fast.is_some() || checked.is_none() {
                prop_assert_eq!(fast, checked, "{}", text);
            } else {
                prop_assert!(text.matches("\"ts\"").count() > 1 || text.matches("\"cpu\"").count() > 1
                    || text.matches("\"device_id\"").count() > 1 || text.matches("\"metrics\"").count() > 1
                    || text.matches("\"cohort\"").count() > 1 || text.matches("\"labels\"").count() > 1
                    || text.matches("\"mem\"").count() > 1 || text.matches("t\\u00e9mp").count() > 1,
                    "only duplicate keys may send a valid sample down the checked path: {}", text);
            }
        }
    }

    #[test]
    fn valid_samples_take_the_fast_path_with_the_checked_result() {
        for text in [
            r#"{"device_id":"d1","ts":1767225600000,"metrics":{"cpu":1.5,"mem":2}}"#,
            r#"{"device_id":"d\u00e9","ts":"2026-01-01T00:00:00Z","metrics":{"cpu":-3},"cohort":"tc52","labels":{"fw":"4.2"}}"#,
            r#"{"metrics":{"b":1,"a":2},"labels":{},"cohort":null,"ts":0,"device_id":"x"}"#,
        ] {
            let fast = sample_from_json_text(text, &mut Interner::default());
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, slow(text), "{text}");
        }
        let array = format!("[{}]", [r#"{"device_id":"a","ts":1,"metrics":{"x":1}}"#; 3].join(","));
        assert_eq!(
            samples_from_json_array(array.as_bytes(), &mut Interner::default()).map(|s| s.len()),
            Some(3)
        );
        let bad =
            r#"[{"device_id":"a","ts":1,"metrics":{"x":1}},{"device_id":"a","ts":1,"metrics":{"x":"1"}}]"#;
        assert!(samples_from_json_array(bad.as_bytes(), &mut Interner::default()).is_none());
    }
}
