//! The cryptography of Meta's encrypted Flows endpoint, all on aws-lc-rs. Pure: no I/O.
//!
//! - [`keys`] — RSA private keys (PEM, PKCS#1/PKCS#8, PBES2-encrypted), generation, OAEP.
//! - [`gcm`] — AES-GCM with Meta's 16-byte IV.
//! - [`signature`] — `X-Hub-Signature-256` and `flow_token_signature` checks.
//! - [`der`] — the DER encoding the key formats need.

pub mod der;
pub mod gcm;
pub mod keys;
pub mod signature;
