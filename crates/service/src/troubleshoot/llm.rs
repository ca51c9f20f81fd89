//! The client of an OpenAI-compatible chat-completions endpoint: one POST to
//! `{endpoint}/chat/completions` per attempt, each attempt under its own timeout, a bounded
//! number of retries with exponential backoff on timeouts, transport errors, 5xx and 429
//! (honouring `Retry-After`). Other answers (401, 400, …) are not retried: asking again
//! would not change them.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

use super::rules::{Finding, describe, num};
use super::{Context, TroubleshootSettings};
use crate::troubleshoot::rules::TroubleshootRule;

/// Longest summary and step kept from an answer, in characters, and most steps: an LLM that
/// rambles must not fill the cache.
const MAX_SUMMARY: usize = 1_000;
const MAX_STEP: usize = 600;
const MAX_STEPS: usize = 12;

/// Longest wait a `Retry-After` may ask for between attempts.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why the LLM gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LlmError {
    /// An attempt took longer than the timeout.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The endpoint answered with an error status.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The endpoint could not be reached.
    #[error("unreachable: {0}")]
    Transport(String),
    /// The answer is not a chat completion with usable content.
    #[error("unusable answer: {0}")]
    BadAnswer(String),
}

impl LlmError {
    fn retryable(&self) -> bool {
        match self {
            LlmError::Timeout(_) | LlmError::Transport(_) => true,
            LlmError::Status(s) => *s == 429 || *s >= 500,
            LlmError::BadAnswer(_) => false,
        }
    }
}

/// A troubleshooting answer from the LLM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advice {
    /// Likely cause.
    pub summary: String,
    /// What to do.
    pub steps: Vec<String>,
}

/// The chat-completions client.
pub(crate) struct LlmClient {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

impl LlmClient {
    /// A client of `endpoint` (a base URL such as `https://api.openai.com/v1`).
    pub fn new(endpoint: &reqwest::Url, s: &TroubleshootSettings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder().build()?,
            url: format!("{}/chat/completions", endpoint.as_str().trim_end_matches('/')),
            model: s.model.clone(),
            api_key: s.api_key.clone().filter(|k| !k.is_empty()),
            timeout: s.timeout,
            retries: s.retries,
            backoff: s.backoff,
        })
    }

    /// Asks once, retrying as allowed; on failure, the last error and the attempts made.
    pub async fn ask(&self, system: &str, user: &str) -> Result<Advice, (LlmError, u32)> {
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (result, retry_after) = self.attempt(&body).await;
            match result {
                Ok(advice) => return Ok(advice),
                Err(e) if e.retryable() && attempt <= self.retries => {
                    let backoff = self.backoff.saturating_mul(1 << (attempt - 1).min(16));
                    let wait = retry_after.map_or(backoff, |r| r.min(MAX_RETRY_AFTER).max(backoff));
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "LLM request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err((e, attempt)),
            }
        }
    }

    async fn attempt(&self, body: &Value) -> (Result<Advice, LlmError>, Option<Duration>) {
        let mut request = self.http.post(&self.url).timeout(self.timeout).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                LlmError::Timeout(self.timeout)
            } else {
                LlmError::Transport(e.without_url().to_string())
            }
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return (Err(transport(e)), None),
        };
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return (Err(LlmError::Status(status.as_u16())), retry_after);
        }
        // The per-attempt timeout covers reading the body too.
        let body: Value = match response.json().await {
            Ok(v) => v,
            Err(e) if e.is_timeout() => return (Err(LlmError::Timeout(self.timeout)), None),
            Err(e) if e.is_decode() => return (Err(LlmError::BadAnswer("not JSON".into())), None),
            Err(e) => return (Err(transport(e)), None),
        };
        let Some(content) = body.pointer("/choices/0/message/content").and_then(Value::as_str) else {
            return (Err(LlmError::BadAnswer("no choices[0].message.content".into())), None);
        };
        (parse_content(content).map_err(LlmError::BadAnswer), None)
    }
}

/// The system message: what the model is asked to do and in which form.
pub(crate) const SYSTEM_PROMPT: &str = "You help operators of a fleet of mobile devices fix problems \
    found by an anomaly detector in device telemetry. Given the anomaly, state the most likely cause \
    in one or two sentences, then give concrete troubleshooting steps in the order to try them. \
    Reply with only a JSON object: {\"summary\": \"...\", \"steps\": [\"...\", \"...\"]}.";

/// The user message: everything known about the anomaly, and the rules table's hints.
pub(crate) fn user_prompt(ctx: &Context, rules: &[TroubleshootRule]) -> String {
    let mut p = String::new();
    let ts = anomalyd_engine::fleet::Timestamp(ctx.ts).to_rfc3339();
    p.push_str(&format!(
        "Anomaly {} on device {} (cohort {}), sample time {ts}.\n",
        ctx.anomaly_id,
        ctx.device_id,
        ctx.cohort.as_deref().unwrap_or("none")
    ));
    p.push_str(&format!(
        "Anomaly score {}, grade {}, severity {}; model {}.\n",
        num(ctx.anomaly_score),
        num(ctx.grade),
        ctx.severity,
        ctx.model_version.as_deref().unwrap_or("none")
    ));
    p.push_str(&format!("Problem signature: {}\n", ctx.signature));
    if !ctx.features.is_empty() {
        p.push_str(
            "Top features behind the score (value, normal range p05–p95, side of the median, share):\n",
        );
        for (i, f) in ctx.features.iter().enumerate() {
            let metrics = if f.metrics.is_empty() {
                String::new()
            } else {
                format!("; metric {}", f.metrics.join(", "))
            };
            p.push_str(&format!("{}. {} (share {}{metrics})\n", i + 1, describe(f), num(f.weight)));
        }
    }
    if !ctx.fired.is_empty() {
        p.push_str("Heuristic rules that fired:\n");
        for d in &ctx.fired {
            match &d.metric {
                Some(m) => p.push_str(&format!("- {} (on metric {m})\n", d.name)),
                None => p.push_str(&format!("- {}\n", d.name)),
            }
        }
    }
    let hints: Vec<&TroubleshootRule> = super::rules::findings(rules, ctx)
        .into_iter()
        .filter_map(|f| match f {
            Finding::Rule(r) => Some(r),
            _ => None,
        })
        .collect();
    if !hints.is_empty() {
        p.push_str("The operators' runbook says:\n");
        for r in hints {
            p.push_str(&format!("- {} {}\n", r.summary, r.steps.join(" ")));
        }
    }
    p.push_str(
        "The answer is shown for every anomaly with this signature and model, so do not refer to this \
         device's id or exact values in the steps.",
    );
    p
}

/// The answer in an assistant message: a JSON object `{"summary", "steps"}` (possibly inside a
/// code fence or surrounded by text), or else plain text, whose first line is the summary and
/// whose list items (`-`, `*`, `•`, `1.`, `1)`) are the steps.
pub(crate) fn parse_content(content: &str) -> Result<Advice, String> {
    if let Some(advice) = json_advice(content) {
        return clean(&advice.0, &advice.1);
    }
    let mut lines = content.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("```"));
    let Some(first) = lines.next() else {
        return Err("empty content".into());
    };
    let head = first.trim_start_matches('#').trim();
    let summary = strip_marker(head).unwrap_or(head);
    let rest: Vec<&str> = lines.collect();
    let items: Vec<String> = rest.iter().filter_map(|l| strip_marker(l)).map(str::to_string).collect();
    // Without list items, every further line is a step.
    let steps = if items.is_empty() { rest.iter().map(|l| l.to_string()).collect() } else { items };
    clean(summary.trim_start_matches("Summary:"), &steps)
}

fn json_advice(content: &str) -> Option<(String, Vec<String>)> {
    let start = content.find('{')?;
    let end = content.rfind('}')?;
    let v: Value = serde_json::from_str(content.get(start..=end)?).ok()?;
    let summary = v.get("summary")?.as_str()?.to_string();
    let steps = match v.get("steps") {
        Some(Value::Array(items)) => {
            items.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>()
        }
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    Some((summary, steps))
}

/// The text of a list item without its marker, or `None` when the line is not one.
fn strip_marker(line: &str) -> Option<&str> {
    for m in ["- ", "* ", "• ", "– "] {
        if let Some(rest) = line.strip_prefix(m) {
            return Some(rest.trim());
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &line[digits..];
        if let Some(r) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some(r.trim());
        }
    }
    None
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn clean(summary: &str, steps: &[String]) -> Result<Advice, String> {
    let summary = clip(summary.trim(), MAX_SUMMARY);
    let steps: Vec<String> = steps
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .take(MAX_STEPS)
        .map(|s| clip(s, MAX_STEP))
        .collect();
    if summary.is_empty() && steps.is_empty() {
        return Err("no summary and no steps".into());
    }
    Ok(Advice { summary, steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_parse_with_or_without_fences() {
        let plain = r#"{"summary": "The battery overheats.", "steps": ["Move it to shade.", " Replace the battery. "]}"#;
        let want = Advice {
            summary: "The battery overheats.".into(),
            steps: vec!["Move it to shade.".into(), "Replace the battery.".into()],
        };
        assert_eq!(parse_content(plain).unwrap(), want);
        let fenced = format!("Here you go:\n```json\n{plain}\n```\n");
        assert_eq!(parse_content(&fenced).unwrap(), want);
        let one_step = r#"{"summary": "s", "steps": "do it"}"#;
        assert_eq!(parse_content(one_step).unwrap().steps, ["do it"]);
    }

    #[test]
    fn plain_text_answers_take_the_first_line_and_the_list_items() {
        let text = "## The CPU is pegged by a runaway app.\n\nSteps:\n1. Find the process.\n2) Restart it.\n- Update the app.\n* Reboot.\n";
        let a = parse_content(text).unwrap();
        assert_eq!(a.summary, "The CPU is pegged by a runaway app.");
        assert_eq!(a.steps, ["Find the process.", "Restart it.", "Update the app.", "Reboot."]);
        let no_list = "Summary: memory leak.\nRestart the app.\nReport the leak.";
        let a = parse_content(no_list).unwrap();
        assert_eq!(a.summary, "memory leak.");
        assert_eq!(a.steps, ["Restart the app.", "Report the leak."]);
        // Broken JSON falls back to text rather than failing.
        let a = parse_content("{\"summary\": \"cut off\nStep one").unwrap();
        assert_eq!(a.steps, ["Step one"]);
    }

    #[test]
    fn empty_or_huge_answers_are_handled() {
        assert!(parse_content("").is_err());
        assert!(parse_content("  \n\n ").is_err());
        assert!(parse_content(r#"{"summary": "", "steps": []}"#).is_err());
        let many: Vec<String> = (0..50).map(|i| format!("- step {i} {}", "x".repeat(2_000))).collect();
        let a = parse_content(&format!("Cause.\n{}", many.join("\n"))).unwrap();
        assert_eq!(a.steps.len(), MAX_STEPS);
        assert!(a.steps.iter().all(|s| s.chars().count() <= MAX_STEP + 1));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(LlmError::Timeout(Duration::from_secs(1)).retryable());
        assert!(LlmError::Transport("refused".into()).retryable());
        assert!(LlmError::Status(429).retryable());
        assert!(LlmError::Status(503).retryable());
        assert!(!LlmError::Status(401).retryable());
        assert!(!LlmError::Status(400).retryable());
        assert!(!LlmError::BadAnswer("x".into()).retryable());
    }
}
