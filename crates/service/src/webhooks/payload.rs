//! The JSON body of an alert: what an on-call person needs without opening anything else,
//! and a link for when they want to.

use anomalyd_engine::fleet::Timestamp;
use anomalyd_store::{DeliveryRecord, Store, StoreError};
use serde_json::{Value, json};

/// The body of `delivery`, read from the stored anomaly, incident and device. Built once, at
/// the first attempt; retries send the stored bytes.
pub async fn build_payload(
    store: &Store,
    delivery: &DeliveryRecord,
    public_url: &str,
) -> Result<String, StoreError> {
    let anomaly = store.anomaly(delivery.anomaly_id).await?;
    let incident = store.incident(delivery.incident_id).await?;
    let device = store.device(&anomaly.device_id).await?;
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let explanation = parse(&anomaly.explanation);
    let link = format!("{}/#/anomalies/{}", public_url.trim_end_matches('/'), anomaly.id);
    let body = json!({
        "event": delivery.event,
        "idempotency_key": delivery.idempotency_key,
        "summary": summary(&incident.severity, &anomaly.device_id, &explanation, &incident.signature),
        "incident": {
            "id": incident.id,
            "incident_key": incident.incident_key,
            "severity": incident.severity,
            "signature": incident.signature,
            "opened_at": Timestamp(incident.opened_at).to_rfc3339(),
            "url": format!("{}/#/incidents/{}", public_url.trim_end_matches('/'), incident.id),
        },
        "anomaly": {
            "id": anomaly.id,
            "ts": Timestamp(anomaly.ts).to_rfc3339(),
            "severity": anomaly.severity,
            "grade": anomaly.grade,
            "anomaly_score": anomaly.anomaly_score,
            "detectors": parse(&anomaly.detectors),
            "model_version": anomaly.model_version,
            "explanation": explanation,
        },
        "device": {
            "id": device.id,
            "cohort": device.cohort,
            "labels": parse(&device.labels),
        },
        "dashboard_url": link,
    });
    Ok(body.to_string())
}

/// One line for chat tools: severity, device, and the top feature against its normal range
/// (or the signature when there is no explanation).
fn summary(severity: &str, device: &str, explanation: &Value, signature: &str) -> String {
    let top = explanation.as_array().and_then(|e| e.first());
    let detail = top
        .and_then(|t| {
            let feature = t["feature"].as_str()?;
            let num = |k: &str| {
                t[k].as_f64()
                    .map(|v| format!("{v:.4}").trim_end_matches('0').trim_end_matches('.').to_string())
            };
            let direction = t["direction"].as_str().unwrap_or("outside");
            Some(match (num("value"), num("normal_low"), num("normal_high")) {
                (Some(v), Some(lo), Some(hi)) => format!("{feature} = {v}, {direction} normal {lo}..{hi}"),
                (Some(v), ..) => format!("{feature} = {v} ({direction})"),
                _ => format!("{feature} ({direction})"),
            })
        })
        .unwrap_or_else(|| signature.to_string());
    format!("{severity} incident on {device}: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_the_top_feature_and_its_normal_range() {
        let e = json!([{"feature": "battery_temp_c.last", "direction": "above", "value": 71.0,
                        "normal_low": 30.5, "normal_high": 36.25, "weight": 0.8}]);
        assert_eq!(
            summary("high", "dev-1", &e, "sig"),
            "high incident on dev-1: battery_temp_c.last = 71, above normal 30.5..36.25"
        );
        assert_eq!(summary("low", "d", &json!([]), "model|cpu"), "low incident on d: model|cpu");
    }
}
