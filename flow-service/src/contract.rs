//! Flow JSON: the file a business uploads to WhatsApp, read here so that every answer
//! is checked against it before it leaves.
//!
//! [`FlowJson::parse`] reads the file and checks the file itself (screens, routing model,
//! declared data with examples, `${data.…}` and `${form.…}` references, `navigate`
//! targets), so a broken file stops the service at start, never a request.
//! [`FlowJson::check`] checks one answer: the two most common failures of Flows
//! endpoints in production are answers WhatsApp refuses as `invalid-screen-transition`
//! (a screen the routing model does not allow) and `payload-schema-error` (data that
//! does not match what the screen declares). Each [`Violation`] names which one it is.
//!
//! The rules for moves, given the screen the request came from:
//!
//! | action | may answer |
//! |---|---|
//! | `INIT` | an entry screen: one no route leads to |
//! | `data_exchange` | the same screen (e.g. a validation error), or a screen the routing model lists for it; completion only from a terminal screen |
//! | `BACK` | the same screen, or any screen from which the routing model leads to it (directly or not); any screen when the request names none |
//!
//! The rules for data: every field the screen declares is present with its declared
//! type (nested `items` and `properties` too, where present); a field the screen does
//! not declare is refused, since the screen cannot show it and it usually is a typo or
//! data that should not reach the phone. `error_message` is the exception: WhatsApp
//! shows it as a validation error on any screen, so it is always allowed, and when a
//! screen declares it, an outcome's error message fills it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::sdk::{Action, Outcome};

/// The data field WhatsApp shows as a validation error; the gateway fills it from
/// an outcome's error message.
pub const ERROR_MESSAGE: &str = "error_message";

/// The screen name WhatsApp reserves for completion.
pub const SUCCESS: &str = "SUCCESS";

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
    fn parse(name: &str) -> Option<Self> {
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
fn kind(value: &Value) -> &'static str {
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

impl Schema {
    /// Checks `value` against this schema; on a mismatch, returns the path below
    /// `path` and what was expected and found.
    fn check(&self, value: &Value, path: &str) -> Result<(), Mismatch> {
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

enum Mismatch {
    Type {
        path: String,
        expected: JsonType,
        found: &'static str,
    },
    Missing {
        path: String,
    },
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
    /// The data API version the endpoint speaks, e.g. "3.0".
    pub data_api_version: String,
    /// In file order.
    screens: Vec<Screen>,
    /// Screen → the screens the routing model allows next.
    routes: BTreeMap<String, Vec<String>>,
    /// Screens no route leads to: where INIT may go.
    entry: Vec<String>,
    /// Screen → every screen from which the routing model leads to it.
    ancestors: BTreeMap<String, BTreeSet<String>>,
}

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

fn invalid(at: impl Into<String>, reason: impl Into<String>) -> FlowJsonError {
    FlowJsonError::Invalid {
        at: at.into(),
        reason: reason.into(),
    }
}

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

impl FlowJson {
    /// Reads and checks a Flow JSON file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, FlowJsonError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FlowJsonError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks a Flow JSON document.
    pub fn parse(text: &str) -> Result<Self, FlowJsonError> {
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
        let data_api_version = text_field("data_api_version")?;

        let screens = match root.get("screens") {
            Some(Value::Array(screens)) if !screens.is_empty() => screens,
            Some(_) => return Err(invalid("screens", "expected a non-empty array")),
            None => return Err(invalid("screens", "missing")),
        };
        let mut parsed: Vec<Screen> = Vec::with_capacity(screens.len());
        let mut layouts = Vec::with_capacity(screens.len());
        for (i, screen) in screens.iter().enumerate() {
            let (screen, layout) = parse_screen(screen, &format!("screens[{i}]"))?;
            if parsed.iter().any(|s| s.id == screen.id) {
                return Err(invalid(
                    format!("screens[{i}].id"),
                    format!("screen `{}` is declared twice", screen.id),
                ));
            }
            parsed.push(screen);
            layouts.push(layout);
        }
        if !parsed.iter().any(|s| s.terminal) {
            return Err(invalid("screens", "no screen is terminal"));
        }

        let routes = parse_routes(root.get("routing_model"), &parsed)?;
        let entry: Vec<String> = parsed
            .iter()
            .filter(|s| !routes.values().flatten().any(|to| *to == s.id))
            .map(|s| s.id.clone())
            .collect();
        if entry.is_empty() {
            return Err(invalid(
                "routing_model",
                "no entry screen: every screen has a route leading to it",
            ));
        }
        let ancestors = parsed
            .iter()
            .map(|s| (s.id.clone(), ancestors_of(&s.id, &routes)))
            .collect();
        let flow = FlowJson {
            version,
            data_api_version,
            screens: parsed,
            routes,
            entry,
            ancestors,
        };
        for (screen, layout) in flow.screens.iter().zip(layouts) {
            flow.check_layout(screen, layout)?;
        }
        Ok(flow)
    }

    /// Every screen, in file order.
    pub fn screens(&self) -> &[Screen] {
        &self.screens
    }

    pub fn screen(&self, id: &str) -> Option<&Screen> {
        self.screens.iter().find(|s| s.id == id)
    }

    /// Screens no route leads to, where INIT may go.
    pub fn entry_screens(&self) -> &[String] {
        &self.entry
    }

    /// The screens the routing model allows after `screen`.
    pub fn routes_from(&self, screen: &str) -> &[String] {
        self.routes.get(screen).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Checks an answer to `action` on `from` (the request's screen, empty when it named none).
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
                self.check_move(action, from, screen)?;
                check_data(target, data, error_message.is_some())
            }
        }
    }

    fn check_move(&self, action: Action, from: &str, to: &str) -> Result<(), Violation> {
        let allowed = match action {
            Action::Init => self.entry.iter().any(|e| e == to),
            Action::DataExchange => from == to || self.routes_from(from).iter().any(|r| r == to),
            Action::Back => {
                from.is_empty()
                    || from == to
                    || self.ancestors.get(from).is_some_and(|a| a.contains(to))
            }
        };
        if allowed {
            return Ok(());
        }
        let (from, to) = (from.to_owned(), to.to_owned());
        Err(match action {
            Action::Init => Violation::NotEntry {
                screen: to,
                entry: list(&self.entry),
            },
            Action::DataExchange => Violation::NotRouted {
                allowed: list(self.routes_from(&from)),
                from,
                to,
            },
            Action::Back => Violation::NotBack { from, to },
        })
    }

    /// Checks that a screen's layout refers only to what exists: `${data.x}` to a
    /// declared field, `${form.x}` to a component on the screen, `navigate` to a screen
    /// the routing model allows.
    fn check_layout(&self, screen: &Screen, layout: &Value) -> Result<(), FlowJsonError> {
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
            if !self.routes_from(&screen.id).contains(next) {
                return Err(invalid(
                    &at,
                    format!("navigates to `{next}`, which the routing model does not allow"),
                ));
            }
        }
        Ok(())
    }
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

fn parse_screen<'a>(value: &'a Value, at: &str) -> Result<(Screen, &'a Value), FlowJsonError> {
    let screen = value
        .as_object()
        .ok_or_else(|| invalid(at, "expected an object"))?;
    let id = match screen.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(invalid(format!("{at}.id"), "expected a non-empty string")),
    };
    if id == SUCCESS {
        return Err(invalid(
            format!("{at}.id"),
            "`SUCCESS` is reserved for completion",
        ));
    }
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
                if let Err(m) = schema.check(example, field) {
                    let reason = match m {
                        Mismatch::Type {
                            path,
                            expected,
                            found,
                        } => format!("`__example__`: `{path}` should be {expected}, found {found}"),
                        Mismatch::Missing { path } => {
                            format!("`__example__`: `{path}` is missing")
                        }
                    };
                    return Err(invalid(&at, reason));
                }
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
        Some(Value::String(t)) => JsonType::parse(t).ok_or_else(|| {
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

fn parse_routes(
    value: Option<&Value>,
    screens: &[Screen],
) -> Result<BTreeMap<String, Vec<String>>, FlowJsonError> {
    let model = match value {
        Some(Value::Object(model)) => model,
        Some(_) => return Err(invalid("routing_model", "expected an object")),
        None => return Err(invalid("routing_model", "missing")),
    };
    let known = |id: &str| screens.iter().any(|s| s.id == id);
    let mut routes = BTreeMap::new();
    for (from, targets) in model {
        let at = format!("routing_model.{from}");
        if !known(from) {
            return Err(invalid(&at, format!("no screen `{from}`")));
        }
        let targets = targets
            .as_array()
            .ok_or_else(|| invalid(&at, "expected an array of screen ids"))?;
        let mut next = Vec::with_capacity(targets.len());
        for target in targets {
            match target.as_str() {
                Some(to) if to == from => {
                    return Err(invalid(&at, "a screen cannot route to itself"));
                }
                Some(to) if known(to) => next.push(to.to_owned()),
                Some(to) => return Err(invalid(&at, format!("no screen `{to}`"))),
                None => return Err(invalid(&at, "expected an array of screen ids")),
            }
        }
        routes.insert(from.clone(), next);
    }
    Ok(routes)
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

/// What a layout refers to.
#[derive(Default)]
struct Refs {
    data: BTreeSet<String>,
    form: BTreeSet<String>,
    components: BTreeSet<String>,
    navigate: BTreeSet<String>,
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
                if in_action {
                    if name == Some("navigate")
                        && let Some(next) = object.get("next").and_then(|n| n.get("name"))
                    {
                        self.navigate.extend(next.as_str().map(str::to_owned));
                    }
                } else if let (Some(name), true) = (name, object.contains_key("type")) {
                    self.components.insert(name.to_owned());
                }
                for (key, v) in object {
                    // Actions (`on-click-action`, `on-select-action`, …) and what they
                    // hold have a `name` too, which is no component's.
                    self.walk(v, in_action || key.ends_with("-action"));
                }
            }
            _ => {}
        }
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
    use super::*;
    use serde_json::json;

    /// A small flow: START → (PICK | DONE), PICK → DONE; DONE is terminal.
    fn fixture() -> Value {
        json!({
            "version": "7.3",
            "data_api_version": "3.0",
            "routing_model": {"START": ["PICK", "DONE"], "PICK": ["DONE"], "DONE": []},
            "screens": [
                {"id": "START", "data": {
                    "greeting": {"type": "string", "__example__": "Hi"}
                 }, "layout": {"type": "SingleColumnLayout", "children": [
                    {"type": "TextBody", "text": "${data.greeting}"},
                    {"type": "TextInput", "name": "who", "label": "Who"},
                    {"type": "Footer", "label": "Go", "on-click-action": {
                        "name": "data_exchange", "payload": {"who": "${form.who}"}}}
                ]}},
                {"id": "PICK", "refresh_on_back": true, "data": {
                    "options": {"type": "array", "items": {"type": "object",
                        "properties": {"id": {"type": "string"}, "title": {"type": "string"}},
                        "required": ["id", "title"]},
                        "__example__": [{"id": "a", "title": "A"}]},
                    "count": {"type": "integer", "__example__": 1},
                    "price": {"type": "number", "__example__": 2.5},
                    "open": {"type": "boolean", "__example__": true},
                    "error_message": {"type": "string", "__example__": ""}
                 }, "layout": {"type": "SingleColumnLayout", "children": [
                    {"type": "Footer", "label": "Next", "on-click-action": {
                        "name": "navigate", "next": {"type": "screen", "name": "DONE"}, "payload": {}}}
                ]}},
                {"id": "DONE", "terminal": true, "data": {
                    "summary": {"type": "object", "properties": {"n": {"type": "integer"}},
                        "__example__": {"n": 1}}
                 }, "layout": {"type": "SingleColumnLayout", "children": []}}
            ]
        })
    }

    fn flow() -> FlowJson {
        FlowJson::parse(&fixture().to_string()).unwrap()
    }

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
    fn malformed_files_are_refused_with_their_place() {
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut v = fixture();
            f(&mut v);
            v.to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            ("{".into(), "Flow JSON is not valid JSON"),
            ("[]".into(), "at the top: expected an object"),
            (
                edit(&|v| {
                    v.as_object_mut().unwrap().remove("version");
                }),
                "at version: missing",
            ),
            (
                edit(&|v| v["data_api_version"] = json!(3)),
                "at data_api_version: expected a non-empty string",
            ),
            (
                edit(&|v| v["screens"] = json!([])),
                "at screens: expected a non-empty array",
            ),
            (
                edit(&|v| {
                    v.as_object_mut().unwrap().remove("routing_model");
                }),
                "at routing_model: missing",
            ),
            (
                edit(&|v| v["screens"][1]["id"] = json!("START")),
                "at screens[1].id: screen `START` is declared twice",
            ),
            (
                edit(&|v| v["screens"][0]["id"] = json!("SUCCESS")),
                "at screens[0].id: `SUCCESS` is reserved for completion",
            ),
            (
                edit(&|v| v["screens"][2]["terminal"] = json!(false)),
                "at screens: no screen is terminal",
            ),
            (
                edit(&|v| v["screens"][2]["terminal"] = json!("yes")),
                "at screen `DONE`.terminal: expected a boolean",
            ),
            (
                edit(&|v| {
                    v["screens"][0].as_object_mut().unwrap().remove("layout");
                }),
                "at screen `START`.layout: expected an object",
            ),
            (
                edit(&|v| {
                    v["screens"][0]["data"]["greeting"]
                        .as_object_mut()
                        .unwrap()
                        .remove("__example__");
                }),
                "at screen `START`.data.greeting: missing `__example__`",
            ),
            (
                edit(&|v| v["screens"][0]["data"]["greeting"]["__example__"] = json!(1)),
                "at screen `START`.data.greeting: `__example__`: `greeting` should be a string, found a number",
            ),
            (
                edit(&|v| v["screens"][1]["data"]["options"]["__example__"] = json!([{"id": "a"}])),
                "at screen `PICK`.data.options: `__example__`: `options[0].title` is missing",
            ),
            (
                edit(&|v| v["screens"][0]["data"]["greeting"]["type"] = json!("text")),
                "at screen `START`.data.greeting: unknown type `text`",
            ),
            (
                edit(&|v| {
                    v["screens"][1]["data"]["options"]
                        .as_object_mut()
                        .unwrap()
                        .remove("items");
                }),
                "at screen `PICK`.data.options: an array needs `items`",
            ),
            (
                edit(&|v| v["routing_model"]["START"] = json!(["ELSEWHERE"])),
                "at routing_model.START: no screen `ELSEWHERE`",
            ),
            (
                edit(&|v| v["routing_model"]["GHOST"] = json!([])),
                "at routing_model.GHOST: no screen `GHOST`",
            ),
            (
                edit(&|v| v["routing_model"]["PICK"] = json!(["PICK"])),
                "at routing_model.PICK: a screen cannot route to itself",
            ),
            (
                edit(&|v| v["routing_model"]["DONE"] = json!(["START"])),
                "at routing_model: no entry screen",
            ),
            (
                edit(&|v| {
                    v["screens"][0]["layout"]["children"][0]["text"] =
                        json!("${data.greeting_text}")
                }),
                "at screen `START`: `${data.greeting_text}` refers to an undeclared field",
            ),
            (
                edit(&|v| {
                    v["screens"][0]["layout"]["children"][2]["on-click-action"]["payload"]["who"] =
                        json!("${form.whom}")
                }),
                "at screen `START`: `${form.whom}` refers to no component on the screen",
            ),
            (
                edit(&|v| v["routing_model"]["PICK"] = json!([])),
                "at screen `PICK`: navigates to `DONE`, which the routing model does not allow",
            ),
        ];
        for (text, expected) in cases {
            let err = FlowJson::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}\n  expected: {expected}");
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
    fn load_names_the_file() {
        let err = FlowJson::load("/nonexistent/flow.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/flow.json"), "{err}");
    }
}
