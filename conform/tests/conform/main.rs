//! `flowgate-conform` against real stacks, broken services and its own binary.
//!
//! One test binary with a module per concern: one link instead of one per file.

mod broken;
mod cli;
mod common;
mod grpc_tls;
mod stack;
