//! The `flow-service` binary's library: its configuration and the reference flows.
//! The flows are written against `flowgate-sdk` and served by `flowgate-server`; both
//! are re-exported here at the paths the binary and the tests use.
//!
//! Reading order:
//! - [`flows`] — the reference flows (`signup`, `booking`) and their Flow JSON files
//!   in `flow-service/flows/`.
//! - [`config`] — configuration from environment variables and flags.
//! - `flowgate_server` ([`service`], [`store`], [`tokens`], [`server`], [`wire`]) and
//!   `flowgate_sdk` ([`sdk`], [`router`], [`contract`], [`media`]).

pub mod config;
pub mod flows;

pub use flowgate_sdk::flow as sdk;
pub use flowgate_sdk::{contract, media, router};
pub use flowgate_server::{auth, server, service, store, tokens, wire};
