//! The cryptography of Meta's encrypted Flows endpoint. Pure: no I/O.
//!
//! aws-lc-rs does RSA, HMAC and key generation; RustCrypto crates do what aws-lc-rs
//! has no API for: AES-GCM with a 16-byte nonce and the key file structures.
//!
//! - [`keys`] — RSA private keys (PEM, PKCS#1/PKCS#8, PBES2-encrypted), generation, OAEP.
//! - [`aead`] — AES-128-GCM with Meta's 16-byte IV.
//! - [`signature`] — `X-Hub-Signature-256` and `flow_token_signature` checks.

pub mod aead;
pub mod keys;
pub mod signature;
