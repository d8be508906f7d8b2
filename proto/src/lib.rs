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

/// Reads durations like `10s`, `1500ms`, `15m`, `2h`, `7d`: a whole number and a unit.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    const EXPECTED: &str = "expected a duration like 10s, 1500ms, 15m, 24h or 7d";
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| EXPECTED.to_owned())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| EXPECTED.to_owned())?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(EXPECTED.to_owned()),
    };
    millis
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| "duration too long".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        let cases = [
            ("10s", Ok(Duration::from_secs(10))),
            ("1500ms", Ok(Duration::from_millis(1500))),
            ("15m", Ok(Duration::from_secs(900))),
            ("2h", Ok(Duration::from_secs(7200))),
            ("0s", Ok(Duration::ZERO)),
            ("10", Err(())),
            ("s", Err(())),
            ("1.5s", Err(())),
            ("-1s", Err(())),
            ("10 s", Err(())),
            ("7d", Ok(Duration::from_secs(7 * 86_400))),
            ("10w", Err(())),
            ("", Err(())),
            ("99999999999999999999h", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).map_err(|_| ()), expected, "{text}");
        }
    }

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
