//! The checks a Flow JSON passes once, when it is parsed (so when its flow is
//! registered), so that a broken file stops the service at start, never a request:
//!
//! - screens: ids unique, `SUCCESS` reserved for completion, at least one terminal
//!   screen, every `__example__` of the declared type;
//! - the routing model: it names only declared screens, no screen routes to itself,
//!   and some screen is an entry (no route leads to it);
//! - each layout: `${data.x}` refers to a declared field, `${form.x}` to a component
//!   on the screen, `navigate` to a screen the routing model allows after this one.
//!
//! A flow without an endpoint has no routing model: there, `navigate` must name a
//! declared screen, and `data_exchange`, which needs an endpoint, is refused.

use std::collections::BTreeSet;

use serde_json::Value;

use super::FlowJsonError;
use super::model::{FlowJson, Mismatch, SUCCESS, Screen};
use super::parse::invalid;

/// Checks `flow`, whose screens have `layouts` (in the same order).
pub(super) fn check(flow: &FlowJson, layouts: &[&Value]) -> Result<(), FlowJsonError> {
    check_screens(flow)?;
    if flow.has_endpoint() {
        check_routes(flow)?;
    }
    for (screen, layout) in flow.screens().iter().zip(layouts) {
        check_layout(flow, screen, layout)?;
    }
    Ok(())
}

fn check_screens(flow: &FlowJson) -> Result<(), FlowJsonError> {
    let screens = flow.screens();
    for (i, screen) in screens.iter().enumerate() {
        let at = format!("screens[{i}].id");
        if screen.id == SUCCESS {
            return Err(invalid(at, "`SUCCESS` is reserved for completion"));
        }
        if screens[..i].iter().any(|s| s.id == screen.id) {
            return Err(invalid(
                at,
                format!("screen `{}` is declared twice", screen.id),
            ));
        }
        for (field, schema) in &screen.data {
            let example = &screen.examples[field];
            if let Err(m) = schema.check(example, field) {
                let reason = match m {
                    Mismatch::Type {
                        path,
                        expected,
                        found,
                    } => format!("`__example__`: `{path}` should be {expected}, found {found}"),
                    Mismatch::Missing { path } => format!("`__example__`: `{path}` is missing"),
                };
                return Err(invalid(
                    format!("screen `{}`.data.{field}", screen.id),
                    reason,
                ));
            }
        }
    }
    if !screens.iter().any(|s| s.terminal) {
        return Err(invalid("screens", "no screen is terminal"));
    }
    Ok(())
}

fn check_routes(flow: &FlowJson) -> Result<(), FlowJsonError> {
    let known = |id: &str| flow.screen(id).is_some();
    for (from, targets) in flow.routes() {
        let at = format!("routing_model.{from}");
        if !known(from) {
            return Err(invalid(&at, format!("no screen `{from}`")));
        }
        for to in targets {
            if to == from {
                return Err(invalid(&at, "a screen cannot route to itself"));
            }
            if !known(to) {
                return Err(invalid(&at, format!("no screen `{to}`")));
            }
        }
    }
    if flow.entry_screens().is_empty() {
        return Err(invalid(
            "routing_model",
            "no entry screen: every screen has a route leading to it",
        ));
    }
    Ok(())
}

/// Checks that a screen's layout refers only to what exists.
fn check_layout(flow: &FlowJson, screen: &Screen, layout: &Value) -> Result<(), FlowJsonError> {
    let at = format!("screen `{}`", screen.id);
    let mut refs = Refs::default();
    refs.walk(layout, false);
    for field in &refs.data {
        if !screen.data.contains_key(field) {
            return Err(invalid(
                &at,
                format!("`${{data.{field}}}` refers to an undeclared field"),
            ));
        }
    }
    for field in &refs.form {
        if !refs.components.contains(field) {
            return Err(invalid(
                &at,
                format!("`${{form.{field}}}` refers to no component on the screen"),
            ));
        }
    }
    for next in &refs.navigate {
        if flow.has_endpoint() {
            if !flow.routes_from(&screen.id).contains(next) {
                return Err(invalid(
                    &at,
                    format!("navigates to `{next}`, which the routing model does not allow"),
                ));
            }
        } else if flow.screen(next).is_none() {
            return Err(invalid(
                &at,
                format!("navigates to `{next}`, which the Flow JSON does not declare"),
            ));
        }
    }
    if !flow.has_endpoint() && refs.actions.contains("data_exchange") {
        return Err(invalid(
            &at,
            "`data_exchange` needs an endpoint, and the flow declares no `data_api_version`",
        ));
    }
    Ok(())
}

/// What a layout refers to.
#[derive(Default)]
struct Refs {
    data: BTreeSet<String>,
    form: BTreeSet<String>,
    components: BTreeSet<String>,
    navigate: BTreeSet<String>,
    /// The names of the actions its components take (`navigate`, `complete`, …).
    actions: BTreeSet<String>,
}

impl Refs {
    fn walk(&mut self, value: &Value, in_action: bool) {
        match value {
            Value::String(s) => {
                self.data.extend(references(s, "${data."));
                self.form.extend(references(s, "${form."));
            }
            Value::Array(values) => values.iter().for_each(|v| self.walk(v, in_action)),
            Value::Object(object) => {
                let name = object.get("name").and_then(Value::as_str);
                if !in_action && object.contains_key("type") {
                    self.components.extend(name.map(str::to_owned));
                }
                for (key, v) in object {
                    // Actions (`on-click-action`, `on-select-action`, …) and what they
                    // hold have a `name` too, which is no component's.
                    let action = key.ends_with("-action");
                    if action {
                        self.action(v);
                    }
                    self.walk(v, in_action || action);
                }
            }
            _ => {}
        }
    }

    /// Notes the action `value`, e.g. `{"name": "navigate", "next": {"name": "B"}}`.
    fn action(&mut self, value: &Value) {
        let Some(name) = value.get("name").and_then(Value::as_str) else {
            return;
        };
        if name == "navigate" {
            let next = value.get("next").and_then(|n| n.get("name"));
            self.navigate
                .extend(next.and_then(Value::as_str).map(str::to_owned));
        }
        self.actions.insert(name.to_owned());
    }
}

/// The first name segment after each `prefix` in `text`: `${data.a.b}` → `a`.
fn references<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
    text.match_indices(prefix).map(move |(i, _)| {
        text[i + prefix.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::{edit, refused, survey};
    use super::FlowJson;

    #[test]
    fn inconsistent_files_are_refused_with_their_place() {
        let cases: Vec<(String, &str)> = vec![
            (
                edit(|v| v["screens"][1]["id"] = json!("START")),
                "at screens[1].id: screen `START` is declared twice",
            ),
            (
                edit(|v| v["screens"][0]["id"] = json!("SUCCESS")),
                "at screens[0].id: `SUCCESS` is reserved for completion",
            ),
            (
                edit(|v| v["screens"][2]["terminal"] = json!(false)),
                "at screens: no screen is terminal",
            ),
            (
                edit(|v| v["screens"][0]["data"]["greeting"]["__example__"] = json!(1)),
                "at screen `START`.data.greeting: `__example__`: `greeting` should be a string, found a number",
            ),
            (
                edit(|v| v["screens"][1]["data"]["options"]["__example__"] = json!([{"id": "a"}])),
                "at screen `PICK`.data.options: `__example__`: `options[0].title` is missing",
            ),
            (
                edit(|v| v["routing_model"]["START"] = json!(["ELSEWHERE"])),
                "at routing_model.START: no screen `ELSEWHERE`",
            ),
            (
                edit(|v| v["routing_model"]["GHOST"] = json!([])),
                "at routing_model.GHOST: no screen `GHOST`",
            ),
            (
                edit(|v| v["routing_model"]["PICK"] = json!(["PICK"])),
                "at routing_model.PICK: a screen cannot route to itself",
            ),
            (
                edit(|v| v["routing_model"]["DONE"] = json!(["START"])),
                "at routing_model: no entry screen",
            ),
            (
                edit(|v| {
                    v["screens"][0]["layout"]["children"][0]["text"] =
                        json!("${data.greeting_text}")
                }),
                "at screen `START`: `${data.greeting_text}` refers to an undeclared field",
            ),
            (
                edit(|v| {
                    v["screens"][0]["layout"]["children"][2]["on-click-action"]["payload"]["who"] =
                        json!("${form.whom}")
                }),
                "at screen `START`: `${form.whom}` refers to no component on the screen",
            ),
            (
                edit(|v| v["routing_model"]["PICK"] = json!([])),
                "at screen `PICK`: navigates to `DONE`, which the routing model does not allow",
            ),
        ];
        for (text, expected) in cases {
            let err = refused(FlowJson::parse, &text);
            assert!(err.contains(expected), "{err}\n  expected: {expected}");
        }
    }

    #[test]
    fn a_flow_without_an_endpoint_is_checked_too() {
        let edit_survey = |f: fn(&mut Value)| {
            let mut v: Value = serde_json::from_str(survey()).unwrap();
            f(&mut v);
            v.to_string()
        };
        const FOOTER: &str = "/screens/0/layout/children/0/children/4/on-click-action";
        let cases: Vec<(String, &str)> = vec![
            (
                edit_survey(|v| {
                    v.pointer_mut(FOOTER).unwrap()["next"]["name"] = json!("ELSEWHERE");
                }),
                "at screen `RECOMMEND`: navigates to `ELSEWHERE`, which the Flow JSON does not declare",
            ),
            (
                edit_survey(|v| {
                    *v.pointer_mut(FOOTER).unwrap() =
                        json!({"name": "data_exchange", "payload": {}});
                }),
                "at screen `RECOMMEND`: `data_exchange` needs an endpoint",
            ),
            (
                edit_survey(|v| v["screens"][1]["id"] = json!("SUCCESS")),
                "at screens[1].id: `SUCCESS` is reserved for completion",
            ),
            (
                edit_survey(|v| v["screens"][1]["terminal"] = json!(false)),
                "at screens: no screen is terminal",
            ),
            (
                edit_survey(|v| {
                    v["screens"][1]["data"]["screen_0_Choose_one_0"]["__example__"] = json!(0);
                }),
                "at screen `RATE`.data.screen_0_Choose_one_0: `__example__`: `screen_0_Choose_one_0` should be a string",
            ),
            (
                edit_survey(|v| {
                    v["screens"][1]["data"]
                        .as_object_mut()
                        .unwrap()
                        .remove("screen_0_Leave_a_comment_1");
                }),
                "at screen `RATE`: `${data.screen_0_Leave_a_comment_1}` refers to an undeclared field",
            ),
        ];
        for (text, expected) in cases {
            let err = refused(FlowJson::parse_any, &text);
            assert!(err.contains(expected), "{err}\n  expected: {expected}");
        }
    }
}
