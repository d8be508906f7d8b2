//! Flow JSON documents shared by the tests of this module.

use serde_json::{Value, json};

use super::FlowJson;

/// A small flow: START → (PICK | DONE), PICK → DONE; DONE is terminal.
pub(super) fn fixture() -> Value {
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

/// The [`fixture`], parsed.
pub(super) fn flow() -> FlowJson {
    FlowJson::parse(&fixture().to_string()).unwrap()
}

/// The [`fixture`] with `change` made to it, as text.
pub(super) fn edit(change: impl FnOnce(&mut Value)) -> String {
    let mut v = fixture();
    change(&mut v);
    v.to_string()
}

/// The message of the error `parse` refuses `text` with.
pub(super) fn refused(
    parse: fn(&str) -> Result<FlowJson, super::FlowJsonError>,
    text: &str,
) -> String {
    match parse(text) {
        Ok(flow) => panic!("accepted: {flow:?}"),
        Err(e) => e.to_string(),
    }
}

/// A flow without an endpoint, in the style of Meta's published survey example: two
/// screens joined by `navigate`, `complete` on the last.
pub(super) fn survey() -> &'static str {
    include_str!("../../tests/data/survey.json")
}
