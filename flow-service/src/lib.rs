//! flowgate flow service: the business logic behind the `flowgate.v1` gRPC
//! contract, and a small SDK for writing WhatsApp Flows in Rust.
//!
//! Reading order:
//! - [`sdk`] — the [`Flow`](sdk::Flow) trait, requests and outcomes — what a flow author writes against.
//! - [`router`] — [`Router`](router::Router): a flow as handlers by action and screen.
//! - [`contract`] — [`FlowJson`](contract::FlowJson): a flow's Flow JSON, and the check
//!   every answer passes before it leaves.
//! - [`service`] — [`Flows`](service::Flows) (flows by name, strict mode) and the gRPC
//!   service that routes to them.
//! - [`flows`] — the reference flows (`signup`, `booking`) and their Flow JSON files
//!   in `flow-service/flows/`.
//! - [`media`] — decrypting PhotoPicker / DocumentPicker files.
//! - [`store`] — [`Store`](store::Store): completions, call outcomes by idempotency key and
//!   sessions, in memory, SQLite or PostgreSQL (the `sqlite` and `postgres` features).
//! - [`tokens`] — signed flow tokens and the [`TokenPolicy`](tokens::TokenPolicy).
//! - [`server`] — serves flows with health and reflection until shutdown.
//! - [`config`] — configuration from environment variables and flags.

pub mod config;
pub mod contract;
pub mod flows;
pub mod media;
mod pipeline;
pub mod router;
pub mod sdk;
pub mod server;
pub mod service;
pub mod store;
pub mod tokens;
