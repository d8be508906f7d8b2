//! Hostile payloads: `data` nested past the gateway's depth limit, a 17 KB screen
//! name, and control characters meant to forge log lines. None reaches the flow
//! service where it is refused, and neither binary writes what the client wrote raw.

use flowgate_e2e::spawned::{FlowService, Gateway, GatewayOptions, Logs, metric_sum};
use flowgate_e2e::{read, whatsapp};
use serde_json::{Value, json};

use super::{client, code, real_init};

/// The flow service's `flowgate.v1` calls so far (health and reflection left out).
async fn flow_calls(service: &FlowService) -> f64 {
    let text = service.metrics().await;
    ["Init", "DataExchange", "Back", "NotifyError", "other"]
        .iter()
        .map(|method| {
            metric_sum(
                &text,
                &format!("flow_service_calls_total{{method=\"{method}\","),
            )
        })
        .sum()
}

async fn post(gateway: &Gateway, client: &reqwest::Client, body: &Value) -> (u16, Value) {
    let response = client
        .post(gateway.url("/flow-endpoint"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the request reaches the gateway");
    read(response).await
}

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({"a": inner}))
}

/// `data` 34 deep is a 400 `too_deep` (not a 503 from a failed decode in the flow
/// service), a 17 KB screen a 400 `invalid_field`; neither is sent to the flow service
/// nor retried, while a real two-step journey is served alongside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_data_and_a_long_screen_never_reach_the_flow_service() {
    let service = FlowService::start().await;
    let gateway = Gateway::start(&service.url(), GatewayOptions::default()).await;
    let client = client(&gateway);
    let before = flow_calls(&service).await;

    let deep = whatsapp("data_exchange", "attacker", "WELCOME_SCREEN", nested(34));
    let long = whatsapp("data_exchange", "attacker", &"S".repeat(17_000), json!({}));
    let journey = async {
        real_init(&gateway, &client).await;
        let step = whatsapp(
            "data_exchange",
            "real-user",
            "WELCOME_SCREEN",
            json!({"email": "someone@example.com"}),
        );
        let (status, body) = post(&gateway, &client, &step).await;
        assert_eq!(
            (status, body["screen"].as_str()),
            (200, Some("CONFIRMATION_SCREEN")),
            "{body}"
        );
    };
    let attacks = async {
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(post(&gateway, &client, &deep).await);
            answers.push(post(&gateway, &client, &long).await);
        }
        answers
    };
    let ((), answers) = tokio::join!(journey, attacks);
    for (i, (status, body)) in answers.iter().enumerate() {
        let expected = if i % 2 == 0 {
            "too_deep"
        } else {
            "invalid_field"
        };
        assert_eq!((*status, code(body)), (400, expected), "{body}");
    }
    assert!(
        answers[0].1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`data`"),
        "{}",
        answers[0].1
    );
    // Only the journey's two steps reached the flow service, once each.
    assert_eq!(flow_calls(&service).await, before + 2.0);
    let metrics = gateway.metrics().await;
    assert!(
        !metrics.contains("flowgate_backend_retries_total{"),
        "{metrics}"
    );
}

/// What a forged log line would start with.
const FORGED: [&str; 3] = ["INFO forged", "FORGED", "WARN forged"];

fn assert_clean(logs: &Logs, which: &str) {
    for line in logs.lines() {
        assert!(!line.contains('\x1b'), "{which}: a raw escape in {line:?}");
        assert!(
            !FORGED.iter().any(|forged| line.starts_with(forged)),
            "{which}: a forged line {line:?}"
        );
    }
}

/// A newline and an ANSI escape in an error notification's `error_message`, `screen`
/// and `error_key`, and in a data exchange's screen: both binaries log them escaped on
/// one line, with no raw escape character, and a real request is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_forge_no_log_line() {
    let service = FlowService::start().await;
    let gateway = Gateway::start(&service.url(), GatewayOptions::default()).await;
    let client = client(&gateway);
    let notification = whatsapp(
        "data_exchange",
        "attacker",
        "S\nWARN forged: screen\x1b[2J",
        json!({
            "error": "payload-schema-error\nFORGED\x1b[31m",
            "error_message": "boom\nINFO forged: all good\x1b[31m red",
        }),
    );
    let exchange = whatsapp(
        "data_exchange",
        "attacker",
        "X\nINFO forged: unknown screen\x1b[0m",
        json!({}),
    );
    let attack = async {
        let notified = post(&gateway, &client, &notification).await;
        let exchanged = post(&gateway, &client, &exchange).await;
        (notified, exchanged)
    };
    let ((notified, exchanged), ()) = tokio::join!(attack, real_init(&gateway, &client));
    assert_eq!(notified.0, 200, "{}", notified.1);
    assert_eq!(
        (exchanged.0, code(&exchanged.1)),
        (400, "rejected"),
        "{}",
        exchanged.1
    );

    let gateway_line = gateway
        .logs()
        .wait_for("the WhatsApp client reported an error")
        .await;
    let service_line = service
        .logs()
        .wait_for("the WhatsApp client reported an error")
        .await;
    for line in [&gateway_line, &service_line] {
        assert!(line.contains(r"boom\nINFO forged"), "{line}");
        assert!(line.contains(r"payload-schema-error\nFORGED"), "{line}");
        assert!(line.contains(r"S\nWARN forged"), "{line}");
    }
    // The refused exchange is in the gateway's access log, its screen escaped.
    gateway.logs().wait_for(r"X\nINFO forged").await;
    assert_clean(gateway.logs(), "gateway");
    assert_clean(service.logs(), "flow service");
}
