//! Answers that break a flow's Flow JSON, end to end: refused with a 503 in strict
//! mode, sent and counted otherwise. And the signup flow's own contract.

use flow_service::contract::FlowJson;
use flow_service::flows::booking;
use flow_service::router::Router;
use flow_service::sdk::{Outcome, Request};
use flow_service::service::Flows;
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use serde_json::{Value, json};

/// A flow over `booking.json` that answers whatever the request asks for: screen
/// `data.answer` with `data.data`, or completion when `data.answer` is absent.
fn puppet() -> Router {
    async fn answer(request: Request) -> Result<Outcome, flow_service::sdk::FlowError> {
        Ok(match request.text("answer") {
            Some(screen) => Outcome::screen(
                screen,
                request.data.get("data").cloned().unwrap_or(json!({})),
            ),
            None => Outcome::complete(json!({})),
        })
    }
    let mut router = Router::new(FlowJson::parse(booking::FLOW_JSON).unwrap()).on_init(answer);
    for screen in [booking::APPOINTMENT, booking::DETAILS, booking::SUMMARY] {
        router = router.on_exchange(screen, answer).on_back(screen, answer);
    }
    router
}

fn appointment() -> Value {
    json!({
        "departments": [{"id": "d", "title": "D"}], "locations": [], "is_location_enabled": false,
        "dates": [], "is_date_enabled": false, "times": [], "is_time_enabled": false,
    })
}

fn details() -> Value {
    json!({"appointment": "A", "department": "d", "location": "l", "date": "2026-03-02", "time": "09:00"})
}

/// (action, from screen, answer asked for, whether it keeps to booking.json)
fn cases() -> Vec<(&'static str, &'static str, Value, bool)> {
    let mut mistyped = details();
    mistyped["time"] = json!(900);
    let mut missing = details();
    missing.as_object_mut().unwrap().remove("appointment");
    let mut extra = details();
    extra["password"] = json!("hunter2");
    vec![
        (
            "INIT",
            "",
            json!({"answer": "APPOINTMENT", "data": appointment()}),
            true,
        ),
        (
            "data_exchange",
            "APPOINTMENT",
            json!({"answer": "DETAILS", "data": details()}),
            true,
        ),
        (
            "BACK",
            "SUMMARY",
            json!({"answer": "APPOINTMENT", "data": appointment()}),
            true,
        ),
        ("data_exchange", "SUMMARY", json!({}), true),
        // invalid-screen-transition
        (
            "INIT",
            "",
            json!({"answer": "DETAILS", "data": details()}),
            false,
        ),
        (
            "data_exchange",
            "APPOINTMENT",
            json!({"answer": "CHECKOUT", "data": {}}),
            false,
        ),
        (
            "data_exchange",
            "APPOINTMENT",
            json!({"answer": "SUMMARY", "data": {}}),
            false,
        ),
        (
            "data_exchange",
            "DETAILS",
            json!({"answer": "APPOINTMENT", "data": appointment()}),
            false,
        ),
        (
            "BACK",
            "APPOINTMENT",
            json!({"answer": "DETAILS", "data": details()}),
            false,
        ),
        ("data_exchange", "DETAILS", json!({}), false),
        // payload-schema-error
        (
            "data_exchange",
            "APPOINTMENT",
            json!({"answer": "DETAILS", "data": missing}),
            false,
        ),
        (
            "data_exchange",
            "APPOINTMENT",
            json!({"answer": "DETAILS", "data": mistyped}),
            false,
        ),
        (
            "data_exchange",
            "APPOINTMENT",
            json!({"answer": "DETAILS", "data": extra}),
            false,
        ),
    ]
}

async fn stack(strict: bool) -> (Service, Gateway, Flows) {
    let flows = Flows::new().register("puppet", puppet()).strict(strict);
    let service = Service::serve("127.0.0.1:0".parse().unwrap(), flows.clone()).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    (service, gateway, flows)
}

#[tokio::test]
async fn strict_mode_turns_a_broken_answer_into_a_503() {
    let (_service, gateway, flows) = stack(true).await;
    let mut broken = 0;
    // A token per case: a completing case uses its token up.
    for (i, (action, from, data, keeps)) in cases().into_iter().enumerate() {
        let request = whatsapp(action, &format!("tok-{i}"), from, data);
        let (status, body) = gateway.post("/flows/puppet", &request).await;
        if keeps {
            assert_eq!(status, 200, "{request}: {body}");
        } else {
            broken += 1;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (503, Some("service_unavailable")),
                "{request}: {body}"
            );
        }
    }
    assert_eq!(flows.violations(), broken);
}

#[tokio::test]
async fn lenient_mode_sends_the_answer_and_counts_it() {
    let (_service, gateway, flows) = stack(false).await;
    let mut broken = 0;
    for (i, (action, from, data, keeps)) in cases().into_iter().enumerate() {
        let request = whatsapp(action, &format!("tok-{i}"), from, data.clone());
        let (status, body) = gateway.post("/flows/puppet", &request).await;
        assert_eq!(status, 200, "{request}: {body}");
        if let Some(screen) = data.get("answer") {
            assert_eq!(&body["screen"], screen, "{request}: {body}");
        }
        broken += u64::from(!keeps);
        assert_eq!(flows.violations(), broken, "{request}");
    }
}

/// Signup's answers all keep to signup.json (the harness is strict), including the
/// ones the main journey does not take.
#[tokio::test]
async fn signup_variants() {
    let service = Service::start(Probe::default()).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    let welcome = "Welcome! Enter your email address to sign up.";
    let cases = [
        (
            whatsapp("INIT", "t", "", json!({"ignored": true})),
            200,
            json!({"screen": "WELCOME_SCREEN", "data": {"welcome_message": welcome}}),
        ),
        (
            whatsapp("data_exchange", "t", "WELCOME_SCREEN", json!({})),
            200,
            json!({"screen": "WELCOME_SCREEN", "data": {"welcome_message": welcome,
                   "error_message": "Please enter a valid email address."}}),
        ),
        (
            whatsapp(
                "data_exchange",
                "t",
                "WELCOME_SCREEN",
                json!({"email": "  ada@example.com "}),
            ),
            200,
            json!({"screen": "CONFIRMATION_SCREEN", "data": {"user_email": "ada@example.com"}}),
        ),
        (
            whatsapp("BACK", "t", "WELCOME_SCREEN", json!({})),
            200,
            json!({"screen": "WELCOME_SCREEN", "data": {"welcome_message": welcome}}),
        ),
        (
            whatsapp(
                "data_exchange",
                "t",
                "CONFIRMATION_SCREEN",
                json!({"user_email": "ada@example.com"}),
            ),
            200,
            json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": {
                "flow_token": "t", "email": "ada@example.com"}}}}),
        ),
    ];
    for (request, status, body) in cases {
        assert_eq!(
            gateway.post("/flows/signup", &request).await,
            (status, body),
            "{request}"
        );
    }
    // The confirmation screen only sends back the email this flow checked, and may
    // not lead back to the first screen: a bad one is refused (on a token not yet
    // completed).
    let (status, body) = gateway
        .post(
            "/flows/signup",
            &whatsapp(
                "data_exchange",
                "t-2",
                "CONFIRMATION_SCREEN",
                json!({"email": "nope"}),
            ),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("rejected")),
        "{body}"
    );
}
