//! The gateway's integration tests: the binary's CLI, connections, the layer stack, the server's threads, observability, the public vectors.
//!
//! One test binary with a module per concern: one link instead of one per file.

mod cli;
mod connections;
mod hop;
mod observability;
mod stack;
mod support;
mod threads;
mod vectors;
