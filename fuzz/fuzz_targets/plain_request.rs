//! `plain_request`: the plain endpoint's request parser and translator (WhatsApp JSON →
//! `flowgate.v1` calls, `translate::parse` and `translate::to_call`), and the answer
//! translator (`FlowResponse` → WhatsApp JSON, `translate::answer`) on answers the fuzzer
//! makes up, as protobuf bytes straight off the wire or described as JSON.
//!
//! Input: `mode ‖ …`, by `mode % 3`:
//! - 0: the rest is a plain request body;
//! - 1: `flow_token (1-byte length) ‖ FlowResponse protobuf`;
//! - 2: `flow_token (1-byte length) ‖ JSON`, one of `{"screen", "data", "error_message"?}`,
//!   `{"complete": params}` or `{"token_invalid": message}`.

#![no_main]

use bytes::Bytes;
use flowgate_fuzz::{Reader, answer_path, request_path, text};
use flowgate_gateway::envelope::{Envelope, Sealer};
use flowgate_proto::json::struct_from_json;
use flowgate_proto::v1::{
    Complete, FlowResponse, NextScreen, TokenInvalid, flow_response::Outcome,
};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    match input.byte() % 3 {
        0 => {
            let body = input.rest();
            let opened = Envelope::Plain
                .open(&HeaderMap::new(), Bytes::copy_from_slice(body))
                .expect("plain mode opens anything");
            request_path(&opened.payload);
        }
        1 => {
            let Some(token) = text(input.short()) else {
                return;
            };
            answer_path(input.rest(), token, &Sealer::Plain);
        }
        _ => {
            let Some(token) = text(input.short()) else {
                return;
            };
            let Ok(Value::Object(described)) = serde_json::from_slice(input.rest()) else {
                return;
            };
            let object = |key: &str| match described.get(key) {
                Some(Value::Object(o)) => struct_from_json(o, key).ok(),
                _ => Some(Default::default()),
            };
            let text = |key: &str| {
                described
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let outcome = if let Some(message) = text("token_invalid") {
                Outcome::TokenInvalid(TokenInvalid { message })
            } else if described.contains_key("complete") {
                let Some(params) = object("complete") else {
                    return;
                };
                Outcome::Complete(Complete {
                    params: Some(params),
                })
            } else {
                let Some(data) = object("data") else { return };
                Outcome::NextScreen(NextScreen {
                    screen: text("screen").unwrap_or_default(),
                    data: Some(data),
                    error_message: text("error_message"),
                })
            };
            let response = FlowResponse {
                outcome: Some(outcome),
            };
            answer_path(&response.encode_to_vec(), token, &Sealer::Plain);
        }
    }
});
