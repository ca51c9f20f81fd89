//! Writing scored rows as CSV or NDJSON.

use std::io::Write;

use anomalyd_engine::Assessment;

/// Human or machine output for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Text,
    /// JSON for scripts.
    Json,
}

/// Row output formats of `score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RowFormat {
    /// `anomaly_score,is_anomaly,grade,severity[,top_features]` with a header.
    Csv,
    /// One JSON object per row.
    Ndjson,
}

/// Writes the CSV header.
pub fn csv_header(out: &mut impl Write, explain: bool) -> std::io::Result<()> {
    if explain {
        writeln!(out, "anomaly_score,is_anomaly,grade,severity,top_features")
    } else {
        writeln!(out, "anomaly_score,is_anomaly,grade,severity")
    }
}

/// Writes one row in `format`. `top_features` in CSV is `name:weight:direction;…`.
pub fn write_row(
    out: &mut impl Write,
    a: &Assessment,
    format: RowFormat,
    explain: bool,
) -> std::io::Result<()> {
    match format {
        RowFormat::Csv => {
            write!(out, "{},{},{},{}", a.anomaly_score, u8::from(a.is_anomaly), a.grade, a.severity)?;
            if explain {
                out.write_all(b",")?;
                for (i, e) in a.explanation.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b";")?;
                    }
                    // Names with separators are quoted by replacing them; keep the field parseable.
                    let name = e.name.replace([',', ';', ':', '"', '\n'], "_");
                    write!(out, "{name}:{:.4}:{}", e.weight, e.direction)?;
                }
            }
            out.write_all(b"\n")
        }
        RowFormat::Ndjson => {
            let mut obj = serde_json::json!({
                "anomaly_score": a.anomaly_score,
                "is_anomaly": a.is_anomaly,
                "grade": a.grade,
                "severity": a.severity.as_str(),
            });
            if explain {
                obj["top_features"] = a
                    .explanation
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "feature": e.name,
                            "weight": e.weight,
                            "direction": e.direction.as_str(),
                            "value": finite_or_null(e.value),
                            "normal_low": finite_or_null(e.normal_low),
                            "normal_high": finite_or_null(e.normal_high),
                        })
                    })
                    .collect();
            }
            serde_json::to_writer(&mut *out, &obj)?;
            out.write_all(b"\n")
        }
    }
}

/// JSON has no NaN: missing values are `null`.
fn finite_or_null(v: f32) -> serde_json::Value {
    if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null }
}

/// Writes report text to stdout, returning (rather than panicking on) a closed pipe.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}
