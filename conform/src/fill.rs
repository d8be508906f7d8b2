//! Filling a form as a user would, and resolving an action's payload as WhatsApp does.
//!
//! A value for an input comes from, in order: the scenario file, the component's
//! `init-value`, the form's `init-values`, or a valid value derived from the component
//! (its `input-type`, `min-chars` / `max-chars`, the options of its `data-source`,
//! `min-date`, …). PhotoPicker and DocumentPicker get no value: the walk cannot upload
//! media.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::layout::Component;

/// A screen's form values and data, as a user left it.
pub type Visited = (Map<String, Value>, Map<String, Value>);

/// What bindings see: the current screen's form and data, and those of the screens
/// visited before (`${screen.NAME.form.x}`, `${screen.NAME.data.x}`).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub form: Map<String, Value>,
    pub data: Map<String, Value>,
    pub screens: BTreeMap<String, Visited>,
}

impl Scope {
    /// The value a binding's path names (`form.email`, `data.items`,
    /// `screen.A.form.name`), or `None` when nothing is there.
    fn lookup(&self, path: &str) -> Option<Value> {
        let mut parts = path.split('.');
        let (root, rest): (&Map<String, Value>, Vec<&str>) = match parts.next()? {
            "form" => (&self.form, parts.collect()),
            "data" => (&self.data, parts.collect()),
            "screen" => {
                let (form, data) = self.screens.get(parts.next()?)?;
                match parts.next()? {
                    "form" => (form, parts.collect()),
                    "data" => (data, parts.collect()),
                    _ => return None,
                }
            }
            _ => return None,
        };
        let (first, rest) = rest.split_first()?;
        let mut value = root.get(*first)?;
        for key in rest {
            value = match value {
                Value::Object(o) => o.get(*key)?,
                Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value.clone())
    }

    /// Resolves `${…}` bindings in a payload value: a string that is one binding
    /// becomes the bound value with its type; bindings inside longer text are
    /// interpolated. A key whose binding names nothing (an input left empty) is
    /// left out, as the phone leaves out an empty optional field.
    pub fn resolve(&self, value: &Value) -> Option<Value> {
        match value {
            Value::String(text) => {
                if let Some(path) = single_binding(text) {
                    return self.lookup(path);
                }
                Some(Value::String(self.interpolate(text)))
            }
            Value::Array(items) => Some(Value::Array(
                items
                    .iter()
                    .map(|i| self.resolve(i).unwrap_or(Value::Null))
                    .collect(),
            )),
            Value::Object(object) => Some(Value::Object(self.resolve_map(object))),
            other => Some(other.clone()),
        }
    }

    pub fn resolve_map(&self, object: &Map<String, Value>) -> Map<String, Value> {
        object
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), self.resolve(v)?)))
            .collect()
    }

    fn interpolate(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let path = &rest[start + 2..start + len];
            match self.lookup(path) {
                Some(Value::String(s)) => out.push_str(&s),
                Some(Value::Null) | None => {}
                Some(other) => out.push_str(&other.to_string()),
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// The path of a string that is exactly one binding: `${form.email}` → `form.email`.
fn single_binding(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("${")?.strip_suffix('}')?;
    (!inner.contains("${") && !inner.contains('}')).then_some(inner)
}

/// A valid value for `component`, derived from its properties and, for lists, the
/// options its `data-source` offers in `scope`. `None` when the walk cannot give one.
pub fn derive(component: &Component, scope: &Scope) -> Option<Value> {
    if let Some(value) = component.raw.get("init-value") {
        return Some(value.clone());
    }
    let min = component.number("min-chars");
    let max = component
        .number("max-chars")
        .or_else(|| component.number("max-length"));
    match component.kind.as_str() {
        "TextInput" => {
            let text = match component.str("input-type").unwrap_or("text") {
                "email" => "ada@example.com".to_owned(),
                "number" => "42".to_owned(),
                "phone" => "+441234567890".to_owned(),
                "password" => sized("Conform-Passw0rd", min, max, 'x'),
                "passcode" => sized("123456", min, max, '7'),
                _ => sized("Ada Lovelace", min, max, 'a'),
            };
            Some(Value::String(text))
        }
        "TextArea" => Some(Value::String(sized(
            "Checked by flowgate-conform.",
            min,
            max,
            '.',
        ))),
        "Dropdown" | "RadioButtonsGroup" => options(component, scope).into_iter().next(),
        "CheckboxGroup" | "ChipsSelector" => {
            let wanted = component.number("min-selected-items").unwrap_or(1).max(1) as usize;
            let chosen: Vec<Value> = options(component, scope).into_iter().take(wanted).collect();
            (!chosen.is_empty()).then_some(Value::Array(chosen))
        }
        "DatePicker" => Some(Value::String(date(component))),
        "CalendarPicker" => {
            let day = date(component);
            Some(match component.str("mode") {
                Some("range") => json!({"start-date": day, "end-date": day}),
                _ => Value::String(day),
            })
        }
        "OptIn" => Some(Value::Bool(true)),
        _ => None,
    }
}

/// A value the endpoint should refuse with `error_message`, with what it is: only
/// for inputs whose validity is unambiguous (an email address).
pub fn invalid(component: &Component) -> Option<(Value, &'static str)> {
    match (component.kind.as_str(), component.str("input-type")) {
        ("TextInput", Some("email")) => Some((json!("not-an-email"), "an invalid email")),
        _ => None,
    }
}

/// `base`, padded with `pad` to `min` characters and cut to `max`.
fn sized(base: &str, min: Option<u64>, max: Option<u64>, pad: char) -> String {
    let mut text: String = base.to_owned();
    while (text.chars().count() as u64) < min.unwrap_or(0) {
        text.push(pad);
    }
    if let Some(max) = max {
        text = text.chars().take(max as usize).collect();
    }
    text
}

/// The ids of the enabled options of a list input, in order.
fn options(component: &Component, scope: &Scope) -> Vec<Value> {
    let source = match component.raw.get("data-source") {
        Some(Value::String(binding)) => scope.resolve(&Value::String(binding.clone())),
        Some(other) => Some(other.clone()),
        None => None,
    };
    let Some(Value::Array(items)) = source else {
        return Vec::new();
    };
    items
        .iter()
        .filter(|item| item.get("enabled") != Some(&Value::Bool(false)))
        .filter_map(|item| item.get("id").cloned())
        .collect()
}

/// A date the picker accepts: its `min-date` when it has one (a literal date), else
/// its `max-date`, else a fixed future date.
fn date(component: &Component) -> String {
    ["min-date", "max-date"]
        .iter()
        .filter_map(|p| component.str(p))
        .find(|d| !d.contains("${"))
        .unwrap_or("2030-01-15")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(raw: Value) -> Component {
        let raw = raw.as_object().unwrap().clone();
        Component {
            kind: raw["type"].as_str().unwrap().to_owned(),
            name: raw.get("name").and_then(Value::as_str).map(str::to_owned),
            raw,
            on_select: None,
            on_click: None,
        }
    }

    #[test]
    fn inputs_get_valid_values_from_their_properties() {
        let mut scope = Scope::default();
        scope.data.insert(
            "items".into(),
            json!([{"id": "a", "title": "A", "enabled": false}, {"id": "b", "title": "B"}]),
        );
        let cases = [
            (
                json!({"type": "TextInput", "name": "e", "input-type": "email"}),
                json!("ada@example.com"),
            ),
            (
                json!({"type": "TextInput", "name": "p", "input-type": "passcode", "max-chars": 4}),
                json!("1234"),
            ),
            (
                json!({"type": "TextInput", "name": "t", "min-chars": 15}),
                json!("Ada Lovelaceaaa"),
            ),
            (
                json!({"type": "Dropdown", "name": "d", "data-source": "${data.items}"}),
                json!("b"),
            ),
            (
                json!({"type": "RadioButtonsGroup", "name": "r", "data-source": [{"id": "x", "title": "X"}]}),
                json!("x"),
            ),
            (
                json!({"type": "CheckboxGroup", "name": "c", "data-source": "${data.items}"}),
                json!(["b"]),
            ),
            (
                json!({"type": "DatePicker", "name": "d", "min-date": "2031-02-03"}),
                json!("2031-02-03"),
            ),
            (json!({"type": "OptIn", "name": "o"}), json!(true)),
            (
                json!({"type": "TextInput", "name": "i", "init-value": "given"}),
                json!("given"),
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                derive(&component(raw.clone()), &scope),
                Some(expected),
                "{raw}"
            );
        }
        let empty =
            component(json!({"type": "Dropdown", "name": "d", "data-source": "${data.none}"}));
        assert_eq!(derive(&empty, &scope), None);
    }

    #[test]
    fn payloads_resolve_as_whatsapp_resolves_them() {
        let mut scope = Scope::default();
        scope.form.insert("email".into(), json!("ada@example.com"));
        scope.form.insert("ok".into(), json!(true));
        scope.data.insert("user".into(), json!({"id": 7}));
        scope.screens.insert(
            "FIRST".into(),
            (Map::from_iter([("name".into(), json!("Ada"))]), Map::new()),
        );
        let payload = json!({
            "email": "${form.email}",
            "ok": "${form.ok}",
            "id": "${data.user.id}",
            "greeting": "Hello ${screen.FIRST.form.name} <${form.email}>",
            "missing": "${form.notes}",
            "fixed": "trigger",
        });
        assert_eq!(
            scope.resolve(&payload).unwrap(),
            json!({
                "email": "ada@example.com",
                "ok": true,
                "id": 7,
                "greeting": "Hello Ada <ada@example.com>",
                "fixed": "trigger",
            })
        );
    }
}
