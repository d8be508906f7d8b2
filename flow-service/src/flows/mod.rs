//! The reference flows, each with its Flow JSON in `flow-service/flows/<name>.json`
//! (embedded in the binary, so it runs from any directory).

pub mod booking;
pub mod signup;

use crate::service::Flows;

/// The flows this service runs by default: `signup`, which is also the default flow,
/// and `booking`.
///
/// # Panics
///
/// When an embedded Flow JSON is invalid, which the tests rule out.
pub fn reference() -> Flows {
    Flows::new()
        .register("signup", signup::Signup)
        .register("booking", booking::flow())
        .default_flow("signup")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::contract::FlowJson;
    use crate::sdk::{Action, Outcome};

    const FILES: [(&str, &str); 2] = [
        ("signup", signup::FLOW_JSON),
        ("booking", booking::FLOW_JSON),
    ];

    #[test]
    fn flow_json_files_are_well_formed() {
        for (name, text) in FILES {
            let path = format!("{}/flows/{name}.json", env!("CARGO_MANIFEST_DIR"));
            let flow = FlowJson::load(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                flow,
                FlowJson::parse(text).unwrap(),
                "{name}: embedded = on disk"
            );
            assert_eq!(
                (flow.version.as_str(), flow.data_api_version.as_str()),
                ("7.3", "3.0"),
                "{name}"
            );

            // The raw file, read independently of the parser.
            let raw: Value = serde_json::from_str(text).unwrap();
            let screens = raw["screens"].as_array().unwrap();
            let ids: Vec<&str> = screens.iter().map(|s| s["id"].as_str().unwrap()).collect();
            assert!(
                !ids.is_empty() && !ids.contains(&"SUCCESS"),
                "{name}: {ids:?}"
            );
            let routing = raw["routing_model"].as_object().unwrap();
            for (from, targets) in routing {
                assert!(ids.contains(&from.as_str()), "{name}: {from}");
                for to in targets.as_array().unwrap() {
                    assert!(ids.contains(&to.as_str().unwrap()), "{name}: {from} → {to}");
                }
            }
            for screen in screens {
                assert!(screen["layout"]["children"].is_array(), "{name}");
                for (field, declaration) in screen["data"].as_object().unwrap() {
                    assert!(
                        declaration.get("__example__").is_some(),
                        "{name}: {}.{field} has no __example__",
                        screen["id"]
                    );
                }
            }

            // Each screen's examples are themselves a valid answer on that screen.
            for screen in flow.screens() {
                let outcome = Outcome::screen(&screen.id, Value::Object(screen.examples.clone()));
                assert_eq!(
                    flow.check(Action::DataExchange, &screen.id, &outcome),
                    Ok(()),
                    "{name}: {}",
                    screen.id
                );
            }
        }
    }

    #[test]
    fn the_reference_flows_have_the_expected_shape() {
        let signup = FlowJson::parse(signup::FLOW_JSON).unwrap();
        assert_eq!(signup.entry_screens(), [signup::WELCOME_SCREEN]);
        assert_eq!(
            signup.routes_from(signup::WELCOME_SCREEN),
            [signup::CONFIRMATION_SCREEN]
        );
        assert!(signup.screen(signup::CONFIRMATION_SCREEN).unwrap().terminal);

        let booking = FlowJson::parse(booking::FLOW_JSON).unwrap();
        assert_eq!(booking.entry_screens(), [booking::APPOINTMENT]);
        assert_eq!(
            booking.routes_from(booking::APPOINTMENT),
            [booking::DETAILS]
        );
        assert_eq!(booking.routes_from(booking::DETAILS), [booking::SUMMARY]);
        let terminal: Vec<_> = booking.screens().iter().filter(|s| s.terminal).collect();
        assert_eq!(terminal.len(), 1);
        assert_eq!(terminal[0].id, booking::SUMMARY);
        assert!(booking.screen(booking::DETAILS).unwrap().refresh_on_back);

        // Both reference flows are checked against their Flow JSON.
        let flows = format!("{:?}", reference());
        assert!(flows.contains("unchecked: []"), "{flows}");
    }
}
