//! What a hostile client sends: deep data, long names, made-up error keys and control
//! characters. Each is refused with a 400 or neutralised at the gateway, never turned
//! into a 5xx, an unbounded metric or a forged log line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use serde_json::{Value, json};

async fn stack() -> (Service, Gateway, Probe) {
    let probe = Probe::default();
    let service = Service::start(probe.clone()).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    (service, gateway, probe)
}

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({"a": inner}))
}

#[tokio::test]
async fn deep_data_is_a_400_not_a_failed_decode() {
    let (_service, gateway, probe) = stack().await;
    // At the limit the data reaches the flow intact: the service can decode it.
    let data = nested(flowgate_gateway::translate::MAX_DEPTH);
    let (status, body) = gateway
        .post(
            "/flows/probe",
            &whatsapp("data_exchange", "tok", "ECHO", data.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], data);
    let runs = probe.runs();

    let deeper = nested(flowgate_gateway::translate::MAX_DEPTH + 2);
    let (status, body) = gateway
        .post(
            "/flow-endpoint",
            &whatsapp("data_exchange", "tok", "ECHO", deeper),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "too_deep");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`data`")
    );
    assert_eq!(probe.runs(), runs, "the flow never ran");
}

#[tokio::test]
async fn a_long_screen_is_a_400_and_the_flow_never_runs() {
    let (_service, gateway, probe) = stack().await;
    let screen = "S".repeat(17_000);
    let (status, body) = gateway
        .post(
            "/flow-endpoint",
            &whatsapp("data_exchange", "tok", &screen, json!({})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    assert_eq!(probe.runs(), 0);
    let action = "A".repeat(17_000);
    let (status, body) = gateway
        .post("/flow-endpoint", &whatsapp(&action, "tok", "S", json!({})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    assert!(body.to_string().len() < 1_000, "the action is not echoed");
}

#[tokio::test]
async fn an_unknown_screen_is_quoted_short_and_escaped() {
    let (_service, gateway, _) = stack().await;
    // Within the gateway's limit, unknown to the default flow, with a control character.
    let screen = format!("X\n{}", "Y".repeat(200));
    let (status, body) = gateway
        .post(
            "/flow-endpoint",
            &whatsapp("data_exchange", "tok", &screen, json!({})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "rejected");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(r#"unknown screen "X\nYYY"#), "{message}");
    assert!(message.ends_with('…'), "{message}");
    assert!(message.len() < 150, "{message}");
}

#[tokio::test]
async fn made_up_error_keys_add_no_metric_series() {
    let (_service, gateway, _) = stack().await;
    let prefix = format!("made-up-{}", flowgate_e2e::unique());
    for i in 0..200 {
        let data = json!({"error": format!("{prefix}-{i}"), "error_message": "x"});
        let (status, body) = gateway
            .post(
                "/flow-endpoint",
                &whatsapp("data_exchange", "tok", "S", data),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let metrics = reqwest::get(format!("{}/metrics", gateway.admin_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(&prefix), "{metrics}");
    let series = metrics
        .lines()
        .filter(|line| line.starts_with("flowgate_error_notifications_total{"))
        .collect::<Vec<_>>();
    assert!(
        series
            .iter()
            .any(|line| line.contains(r#"error_key="other""#)),
        "{metrics}"
    );
    assert!(
        series.len() <= flowgate_gateway::telemetry::KNOWN_ERROR_KEYS.len() + 1,
        "{series:?}"
    );
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `#[tokio::test]` runs on one thread, so the gateway's tasks log to this thread's
/// subscriber: its text logs are captured as an operator would read them.
#[tokio::test]
async fn control_characters_in_a_notification_forge_no_log_line() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_service, gateway, _) = stack().await;
    let data = json!({
        "error": "payload-schema-error\nFORGED",
        "error_message": "boom\nINFO forged: all good\x1b[31m red",
    });
    let (status, body) = gateway
        .post(
            "/flow-endpoint",
            &whatsapp("data_exchange", "tok", "S\nX", data),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|line| line.contains("the WhatsApp client reported an error"))
        .unwrap_or_else(|| panic!("no notification line in {logs}"));
    assert!(line.contains(r"boom\nINFO forged"), "{line}");
    assert!(!logs.contains('\x1b'), "{logs}");
    assert!(
        !logs
            .lines()
            .any(|l| l.starts_with("INFO forged") || l.starts_with("FORGED")),
        "{logs}"
    );
}
