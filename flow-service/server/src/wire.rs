//! The SDK's types ⇄ `flowgate.v1` messages, where the SDK has a type of its own so
//! that flow code needs no gRPC crate. Plain functions, since neither side's type
//! belongs to this crate (a `From` impl here would break the orphan rule).

use flowgate_proto::v1;
use flowgate_sdk::FlowTokenSignature;

/// What the gateway found of a request's `flow_token_signature`, as the SDK says it.
pub fn token_signature_from_proto(signature: v1::FlowTokenSignature) -> FlowTokenSignature {
    match signature {
        v1::FlowTokenSignature::Unspecified => FlowTokenSignature::Unspecified,
        v1::FlowTokenSignature::Valid => FlowTokenSignature::Valid,
        v1::FlowTokenSignature::Invalid => FlowTokenSignature::Invalid,
        v1::FlowTokenSignature::Unchecked => FlowTokenSignature::Unchecked,
    }
}

/// The wire value of the SDK's [`FlowTokenSignature`].
pub fn token_signature_to_proto(signature: FlowTokenSignature) -> v1::FlowTokenSignature {
    match signature {
        FlowTokenSignature::Unspecified => v1::FlowTokenSignature::Unspecified,
        FlowTokenSignature::Valid => v1::FlowTokenSignature::Valid,
        FlowTokenSignature::Invalid => v1::FlowTokenSignature::Invalid,
        FlowTokenSignature::Unchecked => v1::FlowTokenSignature::Unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_signatures_round_trip() {
        for wire in [
            v1::FlowTokenSignature::Unspecified,
            v1::FlowTokenSignature::Valid,
            v1::FlowTokenSignature::Invalid,
            v1::FlowTokenSignature::Unchecked,
        ] {
            assert_eq!(
                token_signature_to_proto(token_signature_from_proto(wire)),
                wire
            );
        }
        assert_eq!(
            token_signature_from_proto(v1::FlowTokenSignature::Valid),
            FlowTokenSignature::Valid
        );
    }

    #[test]
    fn the_sdk_hashes_tokens_as_the_gateway_does() {
        for token in ["", "my_flow_token", "v1.abc.def"] {
            assert_eq!(
                flowgate_sdk::token_hash(token),
                flowgate_proto::token_hash(token)
            );
        }
    }
}
