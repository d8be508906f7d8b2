//! The `flowgate.v1` gRPC contract, shared by the gateway and flow services.
//!
//! - [`v1`]: the generated messages, client and server (see `proto/flowgate/v1/flow.proto`,
//!   which documents every field for implementers in other languages).
//! - [`FILE_DESCRIPTOR_SET`]: the compiled descriptors, served through gRPC reflection.
//! - [`json`]: the one place where JSON and `google.protobuf.Struct` meet, including the
//!   rule for numbers a double cannot hold exactly.
//! - [`token_hash`]: how a flow token appears in logs ([`token_digest`], [`token_hash_of`]).

pub mod json;

/// Generated code for package `flowgate.v1`.
#[allow(missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("flowgate.v1");
}

/// The encoded `FileDescriptorSet` of `flowgate.v1` (and the well-known types it imports).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flowgate_descriptor.bin"));

/// A short, stable, non-reversible fingerprint of a flow token for logs and traces:
/// the first 16 hex digits of its SHA-256. Raw tokens never appear in logs.
pub fn token_hash(token: &str) -> String {
    token_hash_of(&token_digest(token))
}

/// The SHA-256 of a flow token: [`token_hash`] is its first 8 bytes in hex. For a caller
/// that needs the digest too, so that it is computed once.
pub fn token_digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut bytes = [0; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

/// [`token_hash`] of the token whose [`token_digest`] this is.
pub fn token_hash_of(digest: &[u8; 32]) -> String {
    // Into a fixed buffer at once: `hex::encode` builds the string a char at a time.
    let mut digits = [0; 16];
    hex::encode_to_slice(&digest[..8], &mut digits).expect("8 bytes are 16 hex digits");
    String::from_utf8(digits.to_vec()).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_stable_and_hides_the_token() {
        let hash = token_hash("my_flow_token");
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, token_hash("my_flow_token"));
        assert_ne!(hash, token_hash("my_flow_token2"));
        assert!(!hash.contains("flow"));
        // SHA-256("my_flow_token"), computed independently.
        assert_eq!(hash, "e88703fa3a66a161");
        assert_eq!(token_hash_of(&token_digest("my_flow_token")), hash);
        for token in ["", "v1.abc.def", "é"] {
            assert_eq!(token_hash(token), hex::encode(&token_digest(token)[..8]));
        }
    }

    #[test]
    fn descriptor_set_names_the_service() {
        let fds = <prost_types::FileDescriptorSet as prost::Message>::decode(FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        assert!(
            fds.file.iter().any(|f| f.package() == "flowgate.v1"
                && f.service.iter().any(|s| s.name() == "FlowService"))
        );
    }
}
