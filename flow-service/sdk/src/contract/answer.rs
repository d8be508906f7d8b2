//! Checking one answer against the model: the screen exists, the move is one the
//! routing model allows, and the data is what the screen declares. Each
//! [`Violation`] names the WhatsApp error the answer would cause.

use serde_json::Value;

use super::model::{ERROR_MESSAGE, FlowJson, JsonType, Mismatch, Screen, kind};
use crate::flow::{Action, Outcome};

/// An answer that does not match the flow's Flow JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("answered screen `{screen}`, which the Flow JSON does not declare")]
    UnknownScreen { screen: String },
    #[error("INIT answered `{screen}`, which is not an entry screen (entry: {entry})")]
    NotEntry { screen: String, entry: String },
    #[error(
        "data_exchange on `{from}` answered `{to}`; the routing model allows `{from}` → {allowed}"
    )]
    NotRouted {
        from: String,
        to: String,
        allowed: String,
    },
    #[error(
        "BACK from `{from}` answered `{to}`, from which the routing model never leads to `{from}`"
    )]
    NotBack { from: String, to: String },
    #[error("{action} on `{from}` completed the flow; only data_exchange on a terminal screen may")]
    NotTerminal { action: Action, from: String },
    #[error("screen `{screen}`: the answer is {found}, not an object")]
    NotAnObject { screen: String, found: &'static str },
    #[error("screen `{screen}`: declared field `{field}` is missing")]
    Missing { screen: String, field: String },
    #[error("screen `{screen}`: `{field}` should be {expected}, found {found}")]
    WrongType {
        screen: String,
        field: String,
        expected: JsonType,
        found: &'static str,
    },
    #[error("screen `{screen}`: `{field}` is not declared")]
    Undeclared { screen: String, field: String },
}

impl Violation {
    /// The error WhatsApp would report for this answer.
    pub fn error_key(&self) -> &'static str {
        match self {
            Violation::UnknownScreen { .. }
            | Violation::NotEntry { .. }
            | Violation::NotRouted { .. }
            | Violation::NotBack { .. }
            | Violation::NotTerminal { .. } => "invalid-screen-transition",
            Violation::NotAnObject { .. }
            | Violation::Missing { .. }
            | Violation::WrongType { .. }
            | Violation::Undeclared { .. } => "payload-schema-error",
        }
    }
}

impl FlowJson {
    /// Checks an answer to `action` on `from` (the request's screen, empty when it named none).
    ///
    /// A flow without an endpoint ([`FlowJson::has_endpoint`]) has no routing model, so
    /// its moves are not checked; the screen, its data, and completing only from a
    /// terminal screen are.
    pub fn check(&self, action: Action, from: &str, outcome: &Outcome) -> Result<(), Violation> {
        match outcome {
            Outcome::TokenInvalid { .. } => Ok(()),
            Outcome::Complete { .. } => {
                let terminal = self.screen(from).is_some_and(|s| s.terminal);
                if action == Action::DataExchange && terminal {
                    Ok(())
                } else {
                    Err(Violation::NotTerminal {
                        action,
                        from: from.to_owned(),
                    })
                }
            }
            Outcome::Screen {
                screen,
                data,
                error_message,
            } => {
                let target = self
                    .screen(screen)
                    .ok_or_else(|| Violation::UnknownScreen {
                        screen: screen.clone(),
                    })?;
                if self.has_endpoint() {
                    self.check_move(action, from, screen)?;
                }
                check_data(target, data, error_message.is_some())
            }
        }
    }

    fn check_move(&self, action: Action, from: &str, to: &str) -> Result<(), Violation> {
        let allowed = match action {
            Action::Init => self.entry_screens().iter().any(|e| e == to),
            Action::DataExchange => from == to || self.routes_from(from).iter().any(|r| r == to),
            Action::Back => from.is_empty() || from == to || self.leads_to(to, from),
        };
        if allowed {
            return Ok(());
        }
        let (from, to) = (from.to_owned(), to.to_owned());
        Err(match action {
            Action::Init => Violation::NotEntry {
                screen: to,
                entry: list(self.entry_screens()),
            },
            Action::DataExchange => Violation::NotRouted {
                allowed: list(self.routes_from(&from)),
                from,
                to,
            },
            Action::Back => Violation::NotBack { from, to },
        })
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "nothing".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_data(screen: &Screen, data: &Value, has_error: bool) -> Result<(), Violation> {
    let name = || screen.id.clone();
    let Value::Object(data) = data else {
        return Err(Violation::NotAnObject {
            screen: name(),
            found: kind(data),
        });
    };
    for (field, schema) in &screen.data {
        let Some(value) = data.get(field) else {
            if field == ERROR_MESSAGE && has_error {
                continue;
            }
            return Err(Violation::Missing {
                screen: name(),
                field: field.clone(),
            });
        };
        schema.check(value, field).map_err(|m| match m {
            Mismatch::Type {
                path,
                expected,
                found,
            } => Violation::WrongType {
                screen: name(),
                field: path,
                expected,
                found,
            },
            Mismatch::Missing { path } => Violation::Missing {
                screen: name(),
                field: path,
            },
        })?;
    }
    if let Some(field) = data
        .keys()
        .find(|k| *k != ERROR_MESSAGE && !screen.data.contains_key(*k))
    {
        return Err(Violation::Undeclared {
            screen: name(),
            field: field.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::{flow, survey};
    use super::*;

    fn pick() -> Value {
        json!({"options": [{"id": "a", "title": "A"}], "count": 2, "price": 3,
               "open": false, "error_message": ""})
    }

    fn done() -> Value {
        json!({"summary": {"n": 1}})
    }

    /// Checks `outcome` as the answer to `action` on `from`: `Ok(())` or the violation's message.
    fn check(action: Action, from: &str, outcome: Outcome) -> Result<(), String> {
        flow()
            .check(action, from, &outcome)
            .map_err(|v| format!("{}: {v}", v.error_key()))
    }

    #[test]
    fn answers() {
        use Action::*;
        let start = || Outcome::screen("START", json!({"greeting": "Hello"}));
        let cases: Vec<(Action, &str, Outcome, Result<(), &str>)> = vec![
            // Moves the routing model allows.
            (Init, "", start(), Ok(())),
            (
                DataExchange,
                "START",
                Outcome::screen("PICK", pick()),
                Ok(()),
            ),
            (
                DataExchange,
                "START",
                Outcome::screen("DONE", done()),
                Ok(()),
            ),
            (
                DataExchange,
                "PICK",
                Outcome::screen("DONE", done()),
                Ok(()),
            ),
            (DataExchange, "START", start().with_error("again"), Ok(())),
            (
                DataExchange,
                "DONE",
                Outcome::complete(json!({"x": 1})),
                Ok(()),
            ),
            (Back, "PICK", start(), Ok(())),
            (Back, "DONE", start(), Ok(())),
            (Back, "DONE", Outcome::screen("PICK", pick()), Ok(())),
            (Back, "PICK", Outcome::screen("PICK", pick()), Ok(())),
            (Back, "", Outcome::screen("DONE", done()), Ok(())),
            (DataExchange, "PICK", Outcome::token_invalid("gone"), Ok(())),
            (Init, "", Outcome::token_invalid("gone"), Ok(())),
            // A screen that does not exist.
            (
                DataExchange,
                "START",
                Outcome::screen("NOPE", json!({})),
                Err(
                    "invalid-screen-transition: answered screen `NOPE`, which the Flow JSON does not declare",
                ),
            ),
            (
                Init,
                "",
                Outcome::screen("SUCCESS", json!({})),
                Err(
                    "invalid-screen-transition: answered screen `SUCCESS`, which the Flow JSON does not declare",
                ),
            ),
            // Moves the routing model does not allow.
            (
                Init,
                "",
                Outcome::screen("PICK", pick()),
                Err(
                    "invalid-screen-transition: INIT answered `PICK`, which is not an entry screen (entry: `START`)",
                ),
            ),
            (
                DataExchange,
                "PICK",
                start(),
                Err(
                    "invalid-screen-transition: data_exchange on `PICK` answered `START`; the routing model allows `PICK` → `DONE`",
                ),
            ),
            (
                DataExchange,
                "DONE",
                Outcome::screen("PICK", pick()),
                Err(
                    "invalid-screen-transition: data_exchange on `DONE` answered `PICK`; the routing model allows `DONE` → nothing",
                ),
            ),
            (
                Back,
                "PICK",
                Outcome::screen("DONE", done()),
                Err(
                    "invalid-screen-transition: BACK from `PICK` answered `DONE`, from which the routing model never leads to `PICK`",
                ),
            ),
            (
                DataExchange,
                "PICK",
                Outcome::complete(json!({})),
                Err(
                    "invalid-screen-transition: data_exchange on `PICK` completed the flow; only data_exchange on a terminal screen may",
                ),
            ),
            (
                Init,
                "",
                Outcome::complete(json!({})),
                Err(
                    "invalid-screen-transition: INIT on `` completed the flow; only data_exchange on a terminal screen may",
                ),
            ),
            (
                Back,
                "DONE",
                Outcome::complete(json!({})),
                Err(
                    "invalid-screen-transition: BACK on `DONE` completed the flow; only data_exchange on a terminal screen may",
                ),
            ),
            // Data that does not match the declaration.
            (
                Init,
                "",
                Outcome::screen("START", json!({})),
                Err("payload-schema-error: screen `START`: declared field `greeting` is missing"),
            ),
            (
                Init,
                "",
                Outcome::screen("START", json!({"greeting": 7})),
                Err(
                    "payload-schema-error: screen `START`: `greeting` should be a string, found a number",
                ),
            ),
            (
                Init,
                "",
                Outcome::screen("START", json!({"greeting": null})),
                Err(
                    "payload-schema-error: screen `START`: `greeting` should be a string, found null",
                ),
            ),
            (
                Init,
                "",
                Outcome::screen("START", json!({"greeting": "Hi", "greting": "Hi"})),
                Err("payload-schema-error: screen `START`: `greting` is not declared"),
            ),
            (
                Init,
                "",
                Outcome::screen("START", json!(["Hi"])),
                Err("payload-schema-error: screen `START`: the answer is an array, not an object"),
            ),
            (
                DataExchange,
                "START",
                Outcome::screen(
                    "PICK",
                    json!({"options": [{"id": "a", "title": 1}], "count": 2, "price": 3, "open": false, "error_message": ""}),
                ),
                Err(
                    "payload-schema-error: screen `PICK`: `options[0].title` should be a string, found a number",
                ),
            ),
            (
                DataExchange,
                "START",
                Outcome::screen(
                    "PICK",
                    json!({"options": [{"id": "a"}], "count": 2, "price": 3, "open": false, "error_message": ""}),
                ),
                Err(
                    "payload-schema-error: screen `PICK`: declared field `options[0].title` is missing",
                ),
            ),
            (
                DataExchange,
                "START",
                Outcome::screen(
                    "PICK",
                    json!({"options": [], "count": 2.5, "price": 3, "open": false, "error_message": ""}),
                ),
                Err(
                    "payload-schema-error: screen `PICK`: `count` should be an integer, found a number",
                ),
            ),
            (
                DataExchange,
                "START",
                Outcome::screen(
                    "PICK",
                    json!({"options": [], "count": 2, "price": "3", "open": false, "error_message": ""}),
                ),
                Err(
                    "payload-schema-error: screen `PICK`: `price` should be a number, found a string",
                ),
            ),
            (
                DataExchange,
                "START",
                Outcome::screen(
                    "PICK",
                    json!({"options": [], "count": 2, "price": 3, "open": "no", "error_message": ""}),
                ),
                Err(
                    "payload-schema-error: screen `PICK`: `open` should be a boolean, found a string",
                ),
            ),
            (
                DataExchange,
                "PICK",
                Outcome::screen("DONE", json!({"summary": {"n": "1"}})),
                Err(
                    "payload-schema-error: screen `DONE`: `summary.n` should be an integer, found a string",
                ),
            ),
            // `error_message`: always allowed; a declared one is filled by the outcome's.
            (
                DataExchange,
                "PICK",
                Outcome::screen(
                    "PICK",
                    json!({"options": [], "count": 2, "price": 3, "open": false}),
                )
                .with_error("Pick one"),
                Ok(()),
            ),
            (
                DataExchange,
                "PICK",
                Outcome::screen(
                    "PICK",
                    json!({"options": [], "count": 2, "price": 3, "open": false}),
                ),
                Err(
                    "payload-schema-error: screen `PICK`: declared field `error_message` is missing",
                ),
            ),
            (
                DataExchange,
                "START",
                Outcome::screen("START", json!({"greeting": "Hi", "error_message": "Who?"})),
                Ok(()),
            ),
        ];
        for (action, from, outcome, expected) in cases {
            let described = format!("{action} on {from:?} → {outcome:?}");
            assert_eq!(
                check(action, from, outcome),
                expected.map_err(str::to_owned),
                "{described}"
            );
        }
    }

    #[test]
    fn the_model_is_read() {
        let flow = flow();
        assert_eq!(flow.version, "7.3");
        assert_eq!(flow.data_api_version, "3.0");
        assert_eq!(flow.entry_screens(), ["START"]);
        assert_eq!(flow.routes_from("START"), ["PICK", "DONE"]);
        assert!(flow.routes_from("NOPE").is_empty());
        let pick = flow.screen("PICK").unwrap();
        assert!(pick.refresh_on_back && !pick.terminal);
        assert!(flow.screen("DONE").unwrap().terminal);
        assert_eq!(pick.examples["count"], json!(1));
        // Every screen's examples are a valid answer on that screen.
        for screen in flow.screens() {
            let outcome = Outcome::screen(&screen.id, Value::Object(screen.examples.clone()));
            assert_eq!(
                flow.check(Action::DataExchange, &screen.id, &outcome),
                Ok(())
            );
        }
    }

    #[test]
    fn answers_of_a_flow_without_an_endpoint_skip_the_routing_model() {
        use Action::*;
        let flow = FlowJson::parse_any(survey()).unwrap();
        let rate = || {
            Outcome::screen(
                "RATE",
                json!({"screen_0_Choose_one_0": "0_Yes", "screen_0_Leave_a_comment_1": ""}),
            )
        };
        let check = |action, from: &str, outcome: Outcome| {
            flow.check(action, from, &outcome)
                .map_err(|v| format!("{}: {v}", v.error_key()))
        };
        // Any move between declared screens: there is no routing model to refuse it.
        assert_eq!(check(Init, "", rate()), Ok(()));
        assert_eq!(
            check(
                DataExchange,
                "RATE",
                Outcome::screen("RECOMMEND", json!({}))
            ),
            Ok(())
        );
        assert_eq!(check(Back, "RECOMMEND", rate()), Ok(()));
        assert_eq!(
            check(DataExchange, "RATE", Outcome::complete(json!({}))),
            Ok(())
        );
        // The screens and their data are still checked, and completion still needs a
        // terminal screen.
        assert_eq!(
            check(Init, "", Outcome::screen("THANKS", json!({}))),
            Err("invalid-screen-transition: answered screen `THANKS`, which the Flow JSON does not declare".into())
        );
        assert_eq!(
            check(Init, "", Outcome::screen("RATE", json!({"screen_0_Choose_one_0": "0_Yes"}))),
            Err("payload-schema-error: screen `RATE`: declared field `screen_0_Leave_a_comment_1` is missing".into())
        );
        assert_eq!(
            check(
                Init,
                "",
                Outcome::screen("RECOMMEND", json!({"Choose_one": "0_Yes"}))
            ),
            Err("payload-schema-error: screen `RECOMMEND`: `Choose_one` is not declared".into())
        );
        assert_eq!(
            check(DataExchange, "RECOMMEND", Outcome::complete(json!({}))),
            Err("invalid-screen-transition: data_exchange on `RECOMMEND` completed the flow; only data_exchange on a terminal screen may".into())
        );
    }
}
