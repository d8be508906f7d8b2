//! End-to-end tests: a real flow service and a real HTTPS gateway on 127.0.0.1, driven by a real HTTPS client.
//!
//! One test binary with a module per concern: one link instead of one per file.

mod booking;
mod contract;
mod durability;
mod endpoint;
mod grpc;
mod hostile_input;
mod meta;
mod meta_properties;
mod meta_rules;
mod portable;
mod preview;
mod resilience;
mod store;
mod tracing;
