//! `flow_json`: Flow JSON parsing and layout checks (`FlowJson::parse`, `parse_any`), and
//! the check of each answer (`FlowJson::check`): arbitrary answers against the reference
//! flows (`flow-service/flows/*.json`), and each parsed flow's own examples against it.
//!
//! Input: `mode ‖ …`, by `mode % 2`:
//! - 0: the rest is Flow JSON text;
//! - 1: `flow (1 byte: signup, booking) ‖ action (1 byte) ‖ from screen (1-byte length) ‖
//!   JSON`, one of `{"screen", "data", "error_message"?}`, `{"complete": params}` or
//!   `{"token_invalid": message}`, checked against that reference flow.

#![no_main]

use std::sync::LazyLock;

use flowgate_fuzz::{Reader, text};
use flowgate_sdk::{Action, FlowJson, Outcome};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static REFERENCE: LazyLock<[FlowJson; 2]> = LazyLock::new(|| {
    [
        include_str!("../../flow-service/flows/signup.json"),
        include_str!("../../flow-service/flows/booking.json"),
    ]
    .map(|text| FlowJson::parse(text).expect("the reference flows parse"))
});

const ACTIONS: [Action; 3] = [Action::Init, Action::DataExchange, Action::Back];

/// Checks an outcome, and what must hold of any result.
fn check(flow: &FlowJson, action: Action, from: &str, outcome: &Outcome) -> bool {
    match flow.check(action, from, outcome) {
        Ok(()) => {
            if let Outcome::Screen { screen, .. } = outcome {
                assert!(
                    flow.screen(screen).is_some(),
                    "accepted unknown screen {screen}"
                );
            }
            if let Outcome::Complete { .. } = outcome {
                assert_eq!(action, Action::DataExchange);
                assert!(flow.screen(from).is_some_and(|s| s.terminal));
            }
            true
        }
        Err(violation) => {
            assert!(!matches!(outcome, Outcome::TokenInvalid { .. }));
            assert!(matches!(
                violation.error_key(),
                "invalid-screen-transition" | "payload-schema-error"
            ));
            assert!(!violation.to_string().is_empty());
            false
        }
    }
}

/// What a parsed flow must allow: each screen shown with its own `__example__` data (a
/// `BACK` that names no screen may go anywhere), and each entry screen on `INIT`.
fn exercise(flow: &FlowJson) {
    for screen in flow.screens() {
        let _ = flow.routes_from(&screen.id);
        let examples = Outcome::screen(screen.id.clone(), Value::Object(screen.examples.clone()));
        assert!(
            check(flow, Action::Back, "", &examples),
            "screen {} refuses its own examples",
            screen.id
        );
        if flow.has_endpoint() && flow.entry_screens().contains(&screen.id) {
            assert!(check(flow, Action::Init, "", &examples));
        }
        for action in ACTIONS {
            check(flow, action, &screen.id, &examples);
            check(flow, action, &screen.id, &Outcome::complete(json!({})));
            check(
                flow,
                action,
                &screen.id,
                &Outcome::screen(screen.id.clone(), json!({})),
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    if input.byte() % 2 == 0 {
        let Some(text) = text(input.rest()) else {
            return;
        };
        let endpoint = FlowJson::parse(text);
        let any = FlowJson::parse_any(text);
        match (&endpoint, &any) {
            (Ok(endpoint), Ok(any)) => {
                assert!(endpoint.has_endpoint());
                assert_eq!(
                    endpoint, any,
                    "parse and parse_any read an endpoint flow apart"
                );
            }
            (Ok(_), Err(e)) => panic!("parse accepts what parse_any refuses: {e}"),
            (Err(_), Ok(any)) => assert!(
                !any.has_endpoint(),
                "parse_any accepts an endpoint flow parse refuses"
            ),
            (Err(_), Err(_)) => {}
        }
        if let Ok(flow) = any {
            exercise(&flow);
        }
        return;
    }

    let flow = &REFERENCE[usize::from(input.byte() % 2)];
    let action = ACTIONS[usize::from(input.byte() % 3)];
    let Some(from) = text(input.short()) else {
        return;
    };
    let Ok(Value::Object(described)) = serde_json::from_slice(input.rest()) else {
        return;
    };
    let text = |key: &str| {
        described
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let outcome = if let Some(message) = text("token_invalid") {
        Outcome::TokenInvalid { message }
    } else if let Some(params) = described.get("complete") {
        Outcome::complete(params.clone())
    } else {
        Outcome::Screen {
            screen: text("screen").unwrap_or_default(),
            data: described.get("data").cloned().unwrap_or(Value::Null),
            error_message: text("error_message"),
        }
    };
    check(flow, action, from, &outcome);
});
