//! flowgate server: serves flows written with [`flowgate_sdk`] behind the `flowgate.v1`
//! gRPC contract, so a flow author needs the SDK and one call:
//!
//! ```no_run
//! # async fn hello() -> Result<(), Box<dyn std::error::Error>> {
//! # let router: flowgate_sdk::Router = unimplemented!();
//! let flows = flowgate_server::Flows::new().register("hello", router);
//! flowgate_server::serve("127.0.0.1:50051", flows).await?;
//! # Ok(()) }
//! ```
//!
//! With `default-features = false` it has no database driver: calls are kept in a
//! [`MemoryStore`](store::MemoryStore) (one process). The `sqlite` and `postgres`
//! features add the SQL stores the `flow-service` binary uses.
//!
//! Reading order:
//! - [`service`] — [`Flows`] (flows by name, a default, strict mode, store, token policy)
//!   and [`FlowServer`](service::FlowServer), the tonic service.
//! - `pipeline` — the steps around every handler: token policy → idempotency claim →
//!   single use → session → handler → Flow JSON check → commit.
//! - [`store`] — the [`Store`](store::Store) trait: in memory, SQLite or PostgreSQL.
//! - [`tokens`] — signed flow tokens and the [`TokenPolicy`](tokens::TokenPolicy).
//! - [`wire`] — the SDK's types ⇄ `flowgate.v1` messages, where the two differ.
//! - [`server`] — [`serve`] and [`run_with`](server::run_with): health, reflection, the
//!   layer stack, TLS, draining.
//! - [`auth`] — the caller check: bearer token and client certificate.

pub mod auth;
mod pipeline;
pub mod server;
pub mod service;
pub mod store;
pub mod tokens;
pub mod wire;

pub use server::serve;
pub use service::Flows;

// The SDK's modules under the names this crate's code uses.
pub(crate) use flowgate_sdk::flow as sdk;
