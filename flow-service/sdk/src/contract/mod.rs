//! Flow JSON: the file a business uploads to WhatsApp, read here so that every answer
//! is checked against it before it leaves.
//!
//! [`FlowJson::parse`] reads the file and checks the file itself (screens, routing model,
//! declared data with examples, `${data.…}` and `${form.…}` references, `navigate`
//! targets), so a broken file stops the service at start, never a request.
//! [`FlowJson::parse_any`] also accepts a flow without an endpoint (no
//! `data_api_version`, no routing model), for previewing and checking one.
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
//!
//! A flow without an endpoint has no routing model: its answers are checked for the
//! screen, its data and completion from a terminal screen, not for the move.
//!
//! In reading order: `model` (the types), `parse` (Flow JSON text → model), `layout`
//! (the checks made once, when a flow is registered) and `answer` (the check of each
//! answer, and [`Violation`]).

mod answer;
mod layout;
mod model;
mod parse;
#[cfg(test)]
mod testing;

pub use answer::Violation;
pub use model::{ERROR_MESSAGE, FlowJson, JsonType, SUCCESS, Schema, Screen};
pub use parse::FlowJsonError;
