//! Flow JSON text → the [model](super::model): reads every part answers are checked
//! against and refuses what has the wrong shape (a missing field, a string where an
//! object belongs). Whether the parts fit together is [`layout`](super::layout)'s
//! question, asked before a [`FlowJson`] is handed out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::layout;
use super::model::{FlowJson, JsonType, Schema, Screen};

/// Why a Flow JSON file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FlowJsonError {
    #[error("cannot read Flow JSON {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Flow JSON is not valid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("invalid Flow JSON at {at}: {reason}")]
    Invalid { at: String, reason: String },
}

pub(super) fn invalid(at: impl Into<String>, reason: impl Into<String>) -> FlowJsonError {
    FlowJsonError::Invalid {
        at: at.into(),
        reason: reason.into(),
    }
}

/// Which flows a parse accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only flows with an endpoint: what a flow service registers.
    Endpoint,
    /// Flows with or without an endpoint: what can be previewed or checked.
    Any,
}

impl FlowJson {
    /// Reads and checks a Flow JSON file of a flow with an endpoint, as
    /// [`parse`](FlowJson::parse) does.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, FlowJsonError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FlowJsonError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks the Flow JSON of a flow with an endpoint: it must declare
    /// `data_api_version` and a `routing_model`. This is what registering a flow needs.
    pub fn parse(text: &str) -> Result<Self, FlowJsonError> {
        read(text, Mode::Endpoint)
    }

    /// Parses and checks any Flow JSON: one with an endpoint exactly as
    /// [`parse`](FlowJson::parse) does, and one without (no `data_api_version`, no
    /// `routing_model`, no `data_exchange` action), whose screens move on the phone by
    /// `navigate` and finish by `complete`. [`FlowJson::has_endpoint`] tells which it
    /// was; answers of a flow without an endpoint are not checked against a routing
    /// model.
    pub fn parse_any(text: &str) -> Result<Self, FlowJsonError> {
        read(text, Mode::Any)
    }
}

fn read(text: &str, mode: Mode) -> Result<FlowJson, FlowJsonError> {
    let root: Value = serde_json::from_str(text)?;
    let root = root
        .as_object()
        .ok_or_else(|| invalid("the top", "expected an object"))?;
    let text_field = |name: &str| match root.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(invalid(name, "expected a non-empty string")),
        // An endpoint only serves flows that declare data_api_version, and
        // WhatsApp requires a routing model of those.
        None => Err(invalid(name, "missing")),
    };
    let version = text_field("version")?;
    let data_api_version = match (mode, root.get("data_api_version")) {
        (Mode::Any, None) => None,
        _ => Some(text_field("data_api_version")?),
    };

    let screens = match root.get("screens") {
        Some(Value::Array(screens)) if !screens.is_empty() => screens,
        Some(_) => return Err(invalid("screens", "expected a non-empty array")),
        None => return Err(invalid("screens", "missing")),
    };
    let mut parsed = Vec::with_capacity(screens.len());
    let mut layouts = Vec::with_capacity(screens.len());
    for (i, screen) in screens.iter().enumerate() {
        let (screen, layout) = parse_screen(screen, &format!("screens[{i}]"))?;
        parsed.push(screen);
        layouts.push(layout);
    }

    let routes = match (&data_api_version, root.get("routing_model")) {
        (Some(_), model) => parse_routes(model)?,
        (None, None) => BTreeMap::new(),
        // WhatsApp routes a flow without an endpoint by its `navigate` actions alone.
        (None, Some(_)) => {
            return Err(invalid(
                "routing_model",
                "only a flow with an endpoint (`data_api_version`) has a routing model",
            ));
        }
    };
    let flow = FlowJson::new(version, data_api_version, parsed, routes, text);
    layout::check(&flow, &layouts)?;
    Ok(flow)
}

/// A screen, and its layout for [`layout::check`].
fn parse_screen<'a>(value: &'a Value, at: &str) -> Result<(Screen, &'a Value), FlowJsonError> {
    let screen = value
        .as_object()
        .ok_or_else(|| invalid(at, "expected an object"))?;
    let id = match screen.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(invalid(format!("{at}.id"), "expected a non-empty string")),
    };
    let at = format!("screen `{id}`");
    let flag = |name: &str| match screen.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!("{at}.{name}"), "expected a boolean")),
    };
    let terminal = flag("terminal")?;
    let refresh_on_back = flag("refresh_on_back")?;
    let layout = screen
        .get("layout")
        .filter(|l| l.is_object())
        .ok_or_else(|| invalid(format!("{at}.layout"), "expected an object"))?;
    let mut data = BTreeMap::new();
    let mut examples = Map::new();
    match screen.get("data") {
        None => {}
        Some(Value::Object(fields)) => {
            for (field, declaration) in fields {
                let at = format!("{at}.data.{field}");
                let schema = parse_schema(declaration, &at)?;
                let example = declaration
                    .get("__example__")
                    .ok_or_else(|| invalid(&at, "missing `__example__`"))?;
                data.insert(field.clone(), schema);
                examples.insert(field.clone(), example.clone());
            }
        }
        Some(_) => return Err(invalid(format!("{at}.data"), "expected an object")),
    }
    Ok((
        Screen {
            id,
            terminal,
            refresh_on_back,
            data,
            examples,
        },
        layout,
    ))
}

fn parse_schema(value: &Value, at: &str) -> Result<Schema, FlowJsonError> {
    let declaration = value
        .as_object()
        .ok_or_else(|| invalid(at, "expected an object with `type`"))?;
    let kind = match declaration.get("type") {
        Some(Value::String(t)) => JsonType::from_name(t).ok_or_else(|| {
            invalid(
                at,
                format!(
                    "unknown type `{t}` (expected string, number, integer, boolean, object or array)"
                ),
            )
        })?,
        _ => return Err(invalid(at, "missing `type`")),
    };
    let items = match (kind, declaration.get("items")) {
        (JsonType::Array, Some(items)) => {
            Some(Box::new(parse_schema(items, &format!("{at}.items"))?))
        }
        (JsonType::Array, None) => return Err(invalid(at, "an array needs `items`")),
        _ => None,
    };
    let mut properties = BTreeMap::new();
    if let Some(props) = declaration.get("properties") {
        let props = props
            .as_object()
            .ok_or_else(|| invalid(format!("{at}.properties"), "expected an object"))?;
        for (name, schema) in props {
            properties.insert(
                name.clone(),
                parse_schema(schema, &format!("{at}.properties.{name}"))?,
            );
        }
    }
    let required = match declaration.get("required") {
        None => Vec::new(),
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| {
                n.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{at}.required"), "expected strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(format!("{at}.required"), "expected an array")),
    };
    Ok(Schema {
        kind,
        items,
        properties,
        required,
    })
}

/// The routing model as written; [`layout::check`] checks that it names real screens.
fn parse_routes(value: Option<&Value>) -> Result<BTreeMap<String, Vec<String>>, FlowJsonError> {
    let model = match value {
        Some(Value::Object(model)) => model,
        Some(_) => return Err(invalid("routing_model", "expected an object")),
        None => return Err(invalid("routing_model", "missing")),
    };
    let mut routes = BTreeMap::new();
    for (from, targets) in model {
        let at = format!("routing_model.{from}");
        let next = targets
            .as_array()
            .and_then(|targets| {
                targets
                    .iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| invalid(&at, "expected an array of screen ids"))?;
        routes.insert(from.clone(), next);
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{edit, refused, survey};
    use super::*;

    #[test]
    fn misshapen_files_are_refused_with_their_place() {
        let cases: Vec<(String, &str)> = vec![
            ("{".into(), "Flow JSON is not valid JSON"),
            ("[]".into(), "at the top: expected an object"),
            (
                edit(|v| {
                    v.as_object_mut().unwrap().remove("version");
                }),
                "at version: missing",
            ),
            (
                edit(|v| {
                    v.as_object_mut().unwrap().remove("data_api_version");
                }),
                "at data_api_version: missing",
            ),
            (
                edit(|v| v["data_api_version"] = json!(3)),
                "at data_api_version: expected a non-empty string",
            ),
            (
                edit(|v| v["screens"] = json!([])),
                "at screens: expected a non-empty array",
            ),
            (
                edit(|v| {
                    v.as_object_mut().unwrap().remove("routing_model");
                }),
                "at routing_model: missing",
            ),
            (
                edit(|v| v["routing_model"]["START"] = json!(["PICK", 7])),
                "at routing_model.START: expected an array of screen ids",
            ),
            (
                edit(|v| v["screens"][1]["id"] = json!("")),
                "at screens[1].id: expected a non-empty string",
            ),
            (
                edit(|v| v["screens"][2]["terminal"] = json!("yes")),
                "at screen `DONE`.terminal: expected a boolean",
            ),
            (
                edit(|v| {
                    v["screens"][0].as_object_mut().unwrap().remove("layout");
                }),
                "at screen `START`.layout: expected an object",
            ),
            (
                edit(|v| {
                    v["screens"][0]["data"]["greeting"]
                        .as_object_mut()
                        .unwrap()
                        .remove("__example__");
                }),
                "at screen `START`.data.greeting: missing `__example__`",
            ),
            (
                edit(|v| v["screens"][0]["data"]["greeting"]["type"] = json!("text")),
                "at screen `START`.data.greeting: unknown type `text`",
            ),
            (
                edit(|v| {
                    v["screens"][1]["data"]["options"]
                        .as_object_mut()
                        .unwrap()
                        .remove("items");
                }),
                "at screen `PICK`.data.options: an array needs `items`",
            ),
        ];
        for (text, expected) in cases {
            let err = refused(FlowJson::parse, &text);
            assert!(err.contains(expected), "{err}\n  expected: {expected}");
        }
    }

    #[test]
    fn parse_any_accepts_a_flow_without_an_endpoint() {
        let flow = FlowJson::parse_any(survey()).unwrap();
        assert!(!flow.has_endpoint());
        assert_eq!(flow.data_api_version, "");
        assert_eq!(flow.version, "7.2");
        // No routing model: the message sending the flow picks its first screen.
        assert_eq!(flow.entry_screens(), ["RECOMMEND", "RATE"]);
        assert!(flow.routes_from("RECOMMEND").is_empty());
        assert!(flow.screen("RATE").unwrap().terminal);

        // Registration still needs an endpoint.
        let err = refused(FlowJson::parse, survey());
        assert!(err.contains("at data_api_version: missing"), "{err}");
    }

    #[test]
    fn parse_any_reads_a_flow_with_an_endpoint_as_parse_does() {
        let text = super::super::testing::fixture().to_string();
        let flow = FlowJson::parse_any(&text).unwrap();
        assert!(flow.has_endpoint());
        assert_eq!(flow, FlowJson::parse(&text).unwrap());
        // With `data_api_version`, the routing model is required as always.
        let err = refused(
            FlowJson::parse_any,
            &edit(|v| {
                v.as_object_mut().unwrap().remove("routing_model");
            }),
        );
        assert!(err.contains("at routing_model: missing"), "{err}");
    }

    #[test]
    fn a_routing_model_needs_an_endpoint() {
        let mut survey: Value = serde_json::from_str(survey()).unwrap();
        survey["routing_model"] = json!({"RECOMMEND": ["RATE"], "RATE": []});
        let err = refused(FlowJson::parse_any, &survey.to_string());
        assert!(
            err.contains("at routing_model: only a flow with an endpoint"),
            "{err}"
        );
    }

    #[test]
    fn load_names_the_file() {
        let err = FlowJson::load("/nonexistent/flow.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/flow.json"), "{err}");
    }
}
