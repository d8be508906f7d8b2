//! What a screen shows and does, read from the Flow JSON's `layout`: its components
//! in the order a user meets them, which of them take input, and the actions they fire.
//!
//! The SDK's [`FlowJson`](flowgate_sdk::FlowJson) models what answers are checked
//! against (screens, declared data, routing model); this reads the rest of the file,
//! what the phone renders, so the walk can fill forms and press buttons as a user would.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The components that take input; each has a `name` that `${form.…}` refers to.
const INPUTS: &[&str] = &[
    "TextInput",
    "TextArea",
    "Dropdown",
    "RadioButtonsGroup",
    "CheckboxGroup",
    "ChipsSelector",
    "DatePicker",
    "CalendarPicker",
    "OptIn",
    "PhotoPicker",
    "DocumentPicker",
];

/// One component of a screen's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// The component's `type`, e.g. `TextInput`.
    pub kind: String,
    /// The form field it fills, for an input.
    pub name: Option<String>,
    /// The component as written, for its properties (`input-type`, `data-source`, …).
    pub raw: Map<String, Value>,
    /// `on-select-action` (Dropdown, RadioButtonsGroup, …): fired once a value is chosen.
    pub on_select: Option<ActionSpec>,
    /// `on-click-action` (Footer, EmbeddedLink, …): fired when the user presses it.
    pub on_click: Option<ActionSpec>,
}

impl Component {
    pub fn is_input(&self) -> bool {
        self.name.is_some() && INPUTS.contains(&self.kind.as_str())
    }

    pub fn str(&self, property: &str) -> Option<&str> {
        self.raw.get(property).and_then(Value::as_str)
    }

    pub fn number(&self, property: &str) -> Option<u64> {
        self.raw.get(property).and_then(Value::as_u64)
    }
}

/// An action a component fires: `data_exchange`, `navigate`, `complete`, …
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpec {
    pub name: String,
    pub payload: Map<String, Value>,
    /// For `navigate`: the screen it goes to.
    pub next: Option<String>,
}

impl ActionSpec {
    fn read(value: &Value) -> Option<Self> {
        let object = value.as_object()?;
        Some(Self {
            name: object.get("name")?.as_str()?.to_owned(),
            payload: object
                .get("payload")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            next: object
                .get("next")
                .and_then(|n| n.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// A screen's components, and the `init-values` its forms declare.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScreenLayout {
    pub components: Vec<Component>,
    pub init_values: Map<String, Value>,
}

impl ScreenLayout {
    /// The action the user presses to leave the screen: the last `on-click-action`
    /// (a Footer ends the layout), or none.
    pub fn primary(&self) -> Option<&ActionSpec> {
        self.components
            .iter()
            .rev()
            .find_map(|c| c.on_click.as_ref())
    }
}

/// Every screen's layout, by screen id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    screens: BTreeMap<String, ScreenLayout>,
}

impl Layout {
    /// Reads the layouts of a Flow JSON the SDK has already parsed and checked.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let root: Value = serde_json::from_str(text)?;
        let mut screens = BTreeMap::new();
        for screen in root
            .get("screens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(id) = screen.get("id").and_then(Value::as_str) else {
                continue;
            };
            let mut layout = ScreenLayout::default();
            if let Some(children) = screen.pointer("/layout/children") {
                collect(children, &mut layout);
            }
            screens.insert(id.to_owned(), layout);
        }
        Ok(Self { screens })
    }

    pub fn screen(&self, id: &str) -> Option<&ScreenLayout> {
        self.screens.get(id)
    }
}

/// Appends the components under `value` in reading order, descending into containers
/// (`Form`, `If`'s `then`/`else`, `Switch`'s `cases`, `NavigationList` has no inputs).
fn collect(value: &Value, out: &mut ScreenLayout) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
        Value::Object(object) => {
            if let Some(kind) = object.get("type").and_then(Value::as_str) {
                if let Some(Value::Object(init)) = object.get("init-values") {
                    out.init_values
                        .extend(init.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                out.components.push(Component {
                    kind: kind.to_owned(),
                    name: object
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    raw: object.clone(),
                    on_select: object.get("on-select-action").and_then(ActionSpec::read),
                    on_click: object.get("on-click-action").and_then(ActionSpec::read),
                });
            }
            for key in ["children", "then", "else"] {
                if let Some(children) = object.get(key) {
                    collect(children, out);
                }
            }
            if let Some(Value::Object(cases)) = object.get("cases") {
                cases.values().for_each(|case| collect(case, out));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_come_in_reading_order_with_their_actions() {
        let text = include_str!("../../flow-service/flows/booking.json");
        let layout = Layout::parse(text).unwrap();
        let appointment = layout.screen("APPOINTMENT").unwrap();
        let inputs: Vec<&str> = appointment
            .components
            .iter()
            .filter(|c| c.is_input())
            .filter_map(|c| c.name.as_deref())
            .collect();
        assert_eq!(inputs, ["department", "location", "date", "time"]);
        assert_eq!(
            appointment.components[1].on_select.as_ref().unwrap().name,
            "data_exchange"
        );
        let primary = appointment.primary().unwrap();
        assert_eq!(primary.name, "data_exchange");
        assert_eq!(primary.payload["time"], "${form.time}");
    }

    #[test]
    fn forms_and_branches_are_descended_into() {
        let text = r#"{"screens": [{"id": "A", "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "Form", "name": "f", "init-values": {"age": "30"}, "children": [
                {"type": "If", "condition": "true", "then": [{"type": "OptIn", "name": "ok", "label": "OK"}],
                 "else": [{"type": "TextInput", "name": "age", "label": "Age", "input-type": "number"}]},
                {"type": "Footer", "label": "Go", "on-click-action": {"name": "navigate",
                    "next": {"type": "screen", "name": "B"}, "payload": {}}}
            ]}]}}]}"#;
        let layout = Layout::parse(text).unwrap();
        let a = layout.screen("A").unwrap();
        assert_eq!(a.init_values["age"], "30");
        let names: Vec<_> = a.components.iter().filter_map(|c| c.name.clone()).collect();
        assert_eq!(names, ["f", "ok", "age"]);
        assert_eq!(a.primary().unwrap().next.as_deref(), Some("B"));
    }
}
