//! The `flowgate.v1` gRPC contract, shared by the gateway and flow services.
//!
//! - [`v1`]: the generated messages, client and server (see `proto/flowgate/v1/flow.proto`,
//!   which documents every field for implementers in other languages).
//! - [`FILE_DESCRIPTOR_SET`]: the compiled descriptors, served through gRPC reflection.
//! - [`json`]: the one place where JSON and `google.protobuf.Struct` meet, including the
//!   rule for numbers a double cannot hold exactly.
//! - [`token_hash`]: how a flow token appears in logs.

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
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    hex::encode(&digest.as_ref()[..8])
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
