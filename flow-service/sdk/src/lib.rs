//! flowgate-sdk: write WhatsApp Flows in Rust for a flowgate flow service.
//!
//! A flow answers each WhatsApp action (`INIT`, `data_exchange`, `BACK`, error
//! notifications) with an [`Outcome`]; it never builds WhatsApp JSON, and it needs no
//! database, server or gRPC crate to be written or tested. `flowgate-server` serves
//! flows written against this one.
//!
//! Reading order:
//! - [`flow`] — the [`Flow`] trait, [`Request`] and its [`Context`], [`Session`],
//!   [`Outcome`], [`FlowError`] and [`ErrorNotice`]: what a flow author writes against.
//! - [`router`] — [`Router`]: a flow as handlers by action and screen.
//! - [`contract`] — [`FlowJson`]: a flow's Flow JSON, parsed and checked, and the check
//!   every answer passes before it leaves ([`Violation`]).
//! - [`claims`] — [`Claims`]: what a signed flow token says (signing and verifying
//!   stay with the service, which holds the secret).
//! - [`media`] — decrypting PhotoPicker / DocumentPicker files.
//! - [`excerpt`] — client-sent text quoted short and escaped, for logs and errors.
//! - [`protocol`] — the endpoint protocol's reserved names and numbers (`SUCCESS`, 427, …).
//!
//! [`router`] opens with a first flow.

pub mod claims;
pub mod contract;
pub mod excerpt;
pub mod flow;
pub mod media;
pub mod protocol;
pub mod router;

pub use claims::Claims;
pub use contract::{FlowJson, FlowJsonError, Violation};
pub use flow::{
    Action, Context, ErrorNotice, Flow, FlowError, FlowTokenSignature, Outcome, Request, Session,
};
pub use router::Router;

/// A short, stable, non-reversible fingerprint of a flow token for logs: the first 16
/// hex digits of its SHA-256, the same as `flowgate_proto::token_hash`, so that one
/// token reads the same in the logs of the gateway, the service and a flow. Raw tokens
/// never appear in logs.
pub fn token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    hex::encode(&digest.as_ref()[..8])
}
