//! The `booking` flow end to end, at `/flows/booking`, with every answer checked
//! against `booking.json` (the harness runs the flow service in strict mode).

use flow_service::flows::booking::*;
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use serde_json::{Map, Value, json};

const PATH: &str = "/flows/booking";
const TOKEN: &str = "booking-token";

async fn stack() -> (Service, Gateway) {
    let service = Service::start(Probe::default()).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    (service, gateway)
}

/// The request and the exact answer expected, status and JSON.
type Step = (Value, (u16, Value));

/// Runs `steps` in order; each names itself in a failure.
async fn check(gateway: &Gateway, steps: Vec<Step>) {
    for (request, expected) in steps {
        let got = gateway.post(PATH, &request).await;
        assert_eq!(got, expected, "request: {request}");
    }
}

fn exchange(screen: &str, data: Value) -> Value {
    whatsapp("data_exchange", TOKEN, screen, data)
}

fn items(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(id, title)| json!({"id": id, "title": title}))
        .collect()
}

fn times(times: &[&str]) -> Value {
    times.iter().map(|t| json!({"id": t, "title": t})).collect()
}

/// `APPOINTMENT` with the given options open.
fn appointment(locations: &[(&str, &str)], dates: &[(&str, &str)], slots: &[&str]) -> Value {
    json!({
        "departments": items(&[
            ("cardiology", "Cardiology"),
            ("dermatology", "Dermatology"),
            ("paediatrics", "Paediatrics"),
        ]),
        "locations": items(locations),
        "is_location_enabled": !locations.is_empty(),
        "dates": items(dates),
        "is_date_enabled": !dates.is_empty(),
        "times": times(slots),
        "is_time_enabled": !slots.is_empty(),
    })
}

const CARDIOLOGY_LOCATIONS: &[(&str, &str)] =
    &[("central", "Central Clinic"), ("north", "North Clinic")];
const CARDIOLOGY_CENTRAL_DATES: &[(&str, &str)] = &[
    ("2026-03-02", "Mon 2 Mar 2026"),
    ("2026-03-04", "Wed 4 Mar 2026"),
];
const CARDIOLOGY_CENTRAL_MONDAY: &[&str] = &["09:00", "09:30", "10:00"];

fn screen(name: &str, data: Value) -> (u16, Value) {
    (200, json!({"screen": name, "data": data}))
}

fn with_error(mut data: Value, message: &str) -> Value {
    data["error_message"] = json!(message);
    data
}

fn fresh() -> (u16, Value) {
    screen(APPOINTMENT, appointment(&[], &[], &[]))
}

/// The appointment every later screen carries.
fn chosen() -> Value {
    json!({
        "department": "cardiology",
        "location": "central",
        "date": "2026-03-02",
        "time": "09:30",
    })
}

fn details_screen() -> Value {
    let mut data = chosen();
    data["appointment"] = json!("Cardiology at Central Clinic, Mon 2 Mar 2026, 09:30");
    data
}

/// What `DETAILS` submits: the carried appointment and the form.
fn details_form(form: Value) -> Value {
    merge(chosen(), form)
}

fn ada() -> Value {
    json!({
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+44 1234 567890",
        "notes": "Wheelchair access, please.",
    })
}

fn summary_screen() -> Value {
    merge(
        details_screen(),
        json!({
            "details": "Ada Lovelace\nada@example.com\n+441234567890\n\nWheelchair access, please.",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+441234567890",
            "notes": "Wheelchair access, please.",
        }),
    )
}

fn merge(a: Value, b: Value) -> Value {
    let mut a: Map<String, Value> = a.as_object().unwrap().clone();
    a.extend(b.as_object().unwrap().clone());
    Value::Object(a)
}

fn rejected(gateway_code: &str) -> (u16, &str) {
    (400, gateway_code)
}

#[tokio::test]
async fn happy_path() {
    let (_service, gateway) = stack().await;
    // SUMMARY's payload is `${data.…}` of every field but the two shown texts.
    let mut confirm = summary_screen();
    confirm.as_object_mut().unwrap().remove("appointment");
    confirm.as_object_mut().unwrap().remove("details");
    check(
        &gateway,
        vec![
            (whatsapp("INIT", TOKEN, "", json!({})), fresh()),
            (
                exchange(
                    APPOINTMENT,
                    json!({"trigger": "department_selected", "department": "cardiology"}),
                ),
                screen(APPOINTMENT, appointment(CARDIOLOGY_LOCATIONS, &[], &[])),
            ),
            (
                exchange(
                    APPOINTMENT,
                    json!({"trigger": "location_selected", "department": "cardiology", "location": "central"}),
                ),
                screen(
                    APPOINTMENT,
                    appointment(CARDIOLOGY_LOCATIONS, CARDIOLOGY_CENTRAL_DATES, &[]),
                ),
            ),
            (
                exchange(
                    APPOINTMENT,
                    json!({"trigger": "date_selected", "department": "cardiology",
                           "location": "central", "date": "2026-03-02"}),
                ),
                screen(
                    APPOINTMENT,
                    appointment(
                        CARDIOLOGY_LOCATIONS,
                        CARDIOLOGY_CENTRAL_DATES,
                        CARDIOLOGY_CENTRAL_MONDAY,
                    ),
                ),
            ),
            (
                exchange(APPOINTMENT, chosen()),
                screen(DETAILS, details_screen()),
            ),
            (
                exchange(DETAILS, details_form(ada())),
                screen(SUMMARY, summary_screen()),
            ),
            (
                exchange(SUMMARY, confirm),
                (
                    200,
                    json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": {
                        "flow_token": TOKEN,
                        "department": "cardiology",
                        "location": "central",
                        "date": "2026-03-02",
                        "time": "09:30",
                        "name": "Ada Lovelace",
                        "email": "ada@example.com",
                        "phone": "+441234567890",
                        "notes": "Wheelchair access, please.",
                    }}}}),
                ),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn appointment_choices_are_validated_on_the_same_screen() {
    let (_service, gateway) = stack().await;
    let on = |data: Value, expected: Value, message: &str| -> Step {
        (
            exchange(APPOINTMENT, data),
            screen(APPOINTMENT, with_error(expected, message)),
        )
    };
    let with_locations = || appointment(CARDIOLOGY_LOCATIONS, &[], &[]);
    let with_dates = || appointment(CARDIOLOGY_LOCATIONS, CARDIOLOGY_CENTRAL_DATES, &[]);
    let with_times = || {
        appointment(
            CARDIOLOGY_LOCATIONS,
            CARDIOLOGY_CENTRAL_DATES,
            CARDIOLOGY_CENTRAL_MONDAY,
        )
    };
    check(
        &gateway,
        vec![
            // Continuing before everything is chosen.
            on(json!({}), appointment(&[], &[], &[]), CHOOSE_DEPARTMENT),
            on(
                json!({"department": "", "location": "", "date": "", "time": ""}),
                appointment(&[], &[], &[]),
                CHOOSE_DEPARTMENT,
            ),
            on(
                json!({"department": "cardiology"}),
                with_locations(),
                CHOOSE_LOCATION,
            ),
            on(
                json!({"department": "cardiology", "location": "central"}),
                with_dates(),
                CHOOSE_DATE,
            ),
            on(
                json!({"department": "cardiology", "location": "central", "date": "2026-03-02"}),
                with_times(),
                CHOOSE_TIME,
            ),
            // Choices the catalogue does not offer after the earlier ones.
            on(
                json!({"trigger": "department_selected", "department": "surgery"}),
                appointment(&[], &[], &[]),
                UNKNOWN_DEPARTMENT,
            ),
            on(
                json!({"trigger": "location_selected", "department": "cardiology", "location": "riverside"}),
                with_locations(),
                UNKNOWN_LOCATION,
            ),
            on(
                json!({"trigger": "date_selected", "department": "cardiology",
                       "location": "central", "date": "2026-03-03"}),
                with_dates(),
                UNKNOWN_DATE,
            ),
            on(
                json!({"department": "cardiology", "location": "central",
                       "date": "2026-03-02", "time": "14:00"}),
                with_times(),
                UNKNOWN_TIME,
            ),
        ],
    )
    .await;

    // A trigger the Flow JSON never sends is refused.
    let (status, body) = gateway
        .post(
            PATH,
            &exchange(APPOINTMENT, json!({"trigger": "weather_changed"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str().unwrap()),
        rejected("rejected")
    );
}

#[tokio::test]
async fn details_are_validated_on_the_same_screen() {
    let (_service, gateway) = stack().await;
    let ada_with = |field: &str, value: Value| {
        let mut form = ada();
        form[field] = value;
        form
    };
    let cases = [
        (ada_with("name", json!("  ")), INVALID_NAME),
        (
            ada_with("name", json!("n".repeat(MAX_NAME + 1))),
            INVALID_NAME,
        ),
        (ada_with("email", json!("ada@")), INVALID_EMAIL),
        (
            ada_with("email", json!("ada lovelace@example.com")),
            INVALID_EMAIL,
        ),
        (ada_with("phone", json!("12345")), INVALID_PHONE),
        (ada_with("phone", json!("0800 CALL NOW")), INVALID_PHONE),
        (ada_with("phone", json!("+1234567890123456")), INVALID_PHONE),
        (
            ada_with("notes", json!("x".repeat(MAX_NOTES + 1))),
            NOTES_TOO_LONG,
        ),
    ];
    let steps = cases
        .into_iter()
        .map(|(form, message)| {
            (
                exchange(DETAILS, details_form(form)),
                screen(DETAILS, with_error(details_screen(), message)),
            )
        })
        .collect();
    check(&gateway, steps).await;

    // At the limits, and without the optional notes.
    let notes = "é".repeat(MAX_NOTES);
    let (status, body) = gateway
        .post(
            PATH,
            &exchange(DETAILS, details_form(ada_with("notes", json!(notes)))),
        )
        .await;
    assert_eq!((status, &body["screen"]), (200, &json!(SUMMARY)), "{body}");
    assert_eq!(body["data"]["notes"], json!(notes));
    let mut form = ada();
    form.as_object_mut().unwrap().remove("notes");
    let (status, body) = gateway
        .post(PATH, &exchange(DETAILS, details_form(form)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["notes"], "");
    assert_eq!(
        body["data"]["details"],
        "Ada Lovelace\nada@example.com\n+441234567890"
    );
}

/// `BACK` from anywhere starts over on `APPOINTMENT`, with fresh options.
#[tokio::test]
async fn back_at_each_step() {
    let (_service, gateway) = stack().await;
    let steps = ["", APPOINTMENT, DETAILS, SUMMARY]
        .into_iter()
        .map(|from| (whatsapp("BACK", TOKEN, from, json!({})), fresh()))
        .collect();
    check(&gateway, steps).await;
    // BACK with no screen and no data at all.
    let bare = json!({"version": "3.0", "action": "BACK", "flow_token": TOKEN});
    assert_eq!(gateway.post(PATH, &bare).await, fresh());
}

/// Data carried forward that no earlier answer could have produced is refused.
#[tokio::test]
async fn tampered_payloads_are_refused() {
    let (_service, gateway) = stack().await;
    let mut summary = summary_screen();
    summary["email"] = json!("not-an-email");
    let cases = [
        exchange(
            DETAILS,
            merge(details_form(ada()), json!({"time": "23:00"})),
        ),
        exchange(DETAILS, merge(ada(), json!({"department": "cardiology"}))),
        exchange(
            SUMMARY,
            merge(summary_screen(), json!({"date": "2026-03-03"})),
        ),
        exchange(SUMMARY, summary),
        exchange("PAYMENT", json!({})),
    ];
    for request in cases {
        let (status, body) = gateway.post(PATH, &request).await;
        assert_eq!(
            (status, body["error"]["code"].as_str().unwrap()),
            rejected("rejected"),
            "{request}: {body}"
        );
    }
}

#[tokio::test]
async fn an_unknown_flow_is_a_clear_404() {
    let (_service, gateway) = stack().await;
    let (status, body) = gateway
        .post("/flows/bookings", &whatsapp("INIT", TOKEN, "", json!({})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_flow"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bookings"),
        "{body}"
    );
}
