//! flowgate flow service: the business logic behind the `flowgate.v1` gRPC
//! contract, and a small SDK for writing WhatsApp Flows in Rust.
//!
//! Reading order:
//! - [`sdk`] — the [`Flow`](sdk::Flow) trait, requests and outcomes — what a flow author writes against.
//! - [`service`] — [`Flows`](service::Flows) (flows by name) and the gRPC service that routes to them.
//! - [`media`] — decrypting PhotoPicker / DocumentPicker files.
//! - [`flows`] — the reference flows (`signup`).
//! - [`server`] — serves flows with health and reflection until shutdown.
//! - [`config`] — configuration from environment variables and flags.

pub mod config;
pub mod flows;
pub mod media;
pub mod sdk;
pub mod server;
pub mod service;
