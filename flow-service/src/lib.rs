//! flowgate flow service: the business logic behind the `flowgate.v1` gRPC
//! contract. Flows are written against the `flowgate-sdk` crate
//! (`flow-service/sdk/`), whose modules are re-exported here at their old paths.
//!
//! Reading order:
//! - [`sdk`], [`router`], [`contract`], [`media`] — the SDK: the [`Flow`](sdk::Flow)
//!   trait, [`Router`](router::Router), [`FlowJson`](contract::FlowJson) and media
//!   decryption (from `flowgate_sdk`).
//! - [`wire`] — the SDK's types ⇄ `flowgate.v1` messages, where the two differ.
//! - [`service`] — [`Flows`](service::Flows) (flows by name, strict mode) and the gRPC
//!   service that routes to them.
//! - [`flows`] — the reference flows (`signup`, `booking`) and their Flow JSON files
//!   in `flow-service/flows/`.
//! - [`store`] — [`Store`](store::Store): completions, call outcomes by idempotency key and
//!   sessions, in memory, SQLite or PostgreSQL (the `sqlite` and `postgres` features).
//! - [`tokens`] — signed flow tokens and the [`TokenPolicy`](tokens::TokenPolicy).
//! - [`server`] — serves flows with health and reflection until shutdown.
//! - [`config`] — configuration from environment variables and flags.

pub mod config;
pub mod flows;
mod pipeline;
pub mod server;
pub mod service;
pub mod store;
pub mod tokens;
pub mod wire;

// The SDK's modules at the paths they had when they lived in this crate.
pub use flowgate_sdk::flow as sdk;
pub use flowgate_sdk::{contract, media, router};
