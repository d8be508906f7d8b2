//! The model of a Flow JSON, as far as answers are concerned: screens, the data each
//! declares, and the routing model. [`parse`](super::parse) builds it,
//! [`layout`](super::layout) checks it once, [`answer`](super::answer) checks answers
//! against it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use crate::protocol::{ERROR_MESSAGE, SUCCESS};

/// A JSON type a Flow JSON data model can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

impl JsonType {
    /// The type a declaration's `type` names.
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => JsonType::String,
            "number" => JsonType::Number,
            "integer" => JsonType::Integer,
            "boolean" => JsonType::Boolean,
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            _ => return None,
        })
    }

    fn matches(self, value: &Value) -> bool {
        match self {
            JsonType::String => value.is_string(),
            JsonType::Number => value.is_number(),
            // WhatsApp's data model is JSON Schema: 2 and 2.0 are both integers.
            JsonType::Integer => value.as_f64().is_some_and(|x| x.fract() == 0.0),
            JsonType::Boolean => value.is_boolean(),
            JsonType::Object => value.is_object(),
            JsonType::Array => value.is_array(),
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonType::String => "a string",
            JsonType::Number => "a number",
            JsonType::Integer => "an integer",
            JsonType::Boolean => "a boolean",
            JsonType::Object => "an object",
            JsonType::Array => "an array",
        })
    }
}

/// What a JSON value is, for messages that must not show the value itself.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A declared type, with what an array or object holds when the Flow JSON says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub kind: JsonType,
    /// For arrays: the schema of every item.
    pub items: Option<Box<Schema>>,
    /// For objects: the schema of each property that is present.
    pub properties: BTreeMap<String, Schema>,
    /// For objects: the properties that must be present.
    pub required: Vec<String>,
}

/// Where and how a value differs from its [`Schema`].
pub(super) enum Mismatch {
    Type {
        path: String,
        expected: JsonType,
        found: &'static str,
    },
    Missing {
        path: String,
    },
}

impl Schema {
    /// Checks `value` against this schema; on a mismatch, returns the path below
    /// `path` and what was expected and found.
    pub(super) fn check(&self, value: &Value, path: &str) -> Result<(), Mismatch> {
        if !self.kind.matches(value) {
            return Err(Mismatch::Type {
                path: path.to_owned(),
                expected: self.kind,
                found: kind(value),
            });
        }
        if let (Some(items), Value::Array(values)) = (&self.items, value) {
            for (i, item) in values.iter().enumerate() {
                items.check(item, &format!("{path}[{i}]"))?;
            }
        }
        if let Value::Object(object) = value {
            for name in &self.required {
                if !object.contains_key(name) {
                    return Err(Mismatch::Missing {
                        path: format!("{path}.{name}"),
                    });
                }
            }
            for (name, schema) in &self.properties {
                if let Some(v) = object.get(name) {
                    schema.check(v, &format!("{path}.{name}"))?;
                }
            }
        }
        Ok(())
    }
}

/// One screen of a Flow JSON, as far as answers are concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    pub id: String,
    /// A terminal screen ends the flow; only from one may the flow complete.
    pub terminal: bool,
    /// Going back from this screen asks the endpoint (`BACK`) for fresh data.
    pub refresh_on_back: bool,
    /// The declared data fields.
    pub data: BTreeMap<String, Schema>,
    /// Each declared field's `__example__`, which WhatsApp uses in previews.
    pub examples: Map<String, Value>,
}

/// A parsed and checked Flow JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowJson {
    /// The Flow JSON version, e.g. "7.3".
    pub version: String,
    /// The data API version the endpoint speaks, e.g. "3.0"; empty for a flow without
    /// an endpoint (see [`FlowJson::parse_any`]).
    pub data_api_version: String,
    /// Whether the flow talks to an endpoint: it declares `data_api_version` and a
    /// routing model.
    endpoint: bool,
    /// In file order.
    screens: Vec<Screen>,
    /// Screen → the screens the routing model allows next.
    routes: BTreeMap<String, Vec<String>>,
    /// Screens no route leads to: where INIT may go.
    entry: Vec<String>,
    /// Screen → every screen from which the routing model leads to it.
    ancestors: BTreeMap<String, BTreeSet<String>>,
    /// The text it was parsed from, for tools that show the flow (a preview).
    source: Arc<str>,
}

impl FlowJson {
    /// The model of a flow, with what answers are checked against derived from its
    /// routing model (empty for a flow without an endpoint).
    pub(super) fn new(
        version: String,
        data_api_version: Option<String>,
        screens: Vec<Screen>,
        routes: BTreeMap<String, Vec<String>>,
        source: &str,
    ) -> Self {
        let entry = screens
            .iter()
            .filter(|s| !routes.values().flatten().any(|to| *to == s.id))
            .map(|s| s.id.clone())
            .collect();
        let ancestors = screens
            .iter()
            .map(|s| (s.id.clone(), ancestors_of(&s.id, &routes)))
            .collect();
        FlowJson {
            version,
            endpoint: data_api_version.is_some(),
            data_api_version: data_api_version.unwrap_or_default(),
            screens,
            routes,
            entry,
            ancestors,
            source: source.into(),
        }
    }

    /// The Flow JSON text this was parsed from, unchanged.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the flow has an endpoint (`data_api_version` and a routing model). A flow
    /// without one moves between screens on the phone alone (`navigate`, `complete`),
    /// so its answers are not checked against a routing model.
    pub fn has_endpoint(&self) -> bool {
        self.endpoint
    }

    /// Every screen, in file order.
    pub fn screens(&self) -> &[Screen] {
        &self.screens
    }

    pub fn screen(&self, id: &str) -> Option<&Screen> {
        self.screens.iter().find(|s| s.id == id)
    }

    /// Screens no route leads to, where INIT may go. Without an endpoint there is no
    /// routing model, and every screen is one: the message that sends the flow names
    /// its first screen.
    pub fn entry_screens(&self) -> &[String] {
        &self.entry
    }

    /// The screens the routing model allows after `screen`.
    pub fn routes_from(&self, screen: &str) -> &[String] {
        self.routes.get(screen).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The routing model as written: screen → the screens allowed next.
    pub(super) fn routes(&self) -> &BTreeMap<String, Vec<String>> {
        &self.routes
    }

    /// Whether the routing model leads from `ancestor` to `screen`, directly or not.
    pub(super) fn leads_to(&self, ancestor: &str, screen: &str) -> bool {
        self.ancestors
            .get(screen)
            .is_some_and(|a| a.contains(ancestor))
    }
}

/// Every screen from which the routing model leads to `screen`, directly or not.
fn ancestors_of(screen: &str, routes: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut todo = vec![screen.to_owned()];
    while let Some(to) = todo.pop() {
        for (from, targets) in routes {
            if targets.contains(&to) && found.insert(from.clone()) {
                todo.push(from.clone());
            }
        }
    }
    found
}
