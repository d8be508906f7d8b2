//! [`Claims`]: what a signed flow token says — which flow it opens, for whom, until when.
//!
//! The service verifies a token's MAC before a flow sees its claims (under the `signed`
//! token policy), so a flow can trust [`Request::claims`](crate::Request::claims). The
//! token format, the secret, signing and verifying live in the service
//! (`flow_service::tokens`), never in flow code.

use serde::{Deserialize, Serialize};

/// What a signed token says. It is the JSON payload of the token:
/// `{"flow", "sub"?, "exp", "nonce"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The flow this token opens.
    pub flow: String,
    /// Who the business sent it to (its own identifier for the user), if it said.
    #[serde(rename = "sub", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(rename = "exp")]
    pub expires_at: u64,
    /// Makes every token unique, so two tokens for the same flow and subject issued in
    /// the same second still complete separately.
    pub nonce: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_use_the_token_payload_names() {
        let claims = Claims {
            flow: "booking".into(),
            subject: Some("customer-7".into()),
            expires_at: 1_800_000_000,
            nonce: "n".into(),
        };
        let value = serde_json::to_value(&claims).unwrap();
        assert_eq!(
            value,
            json!({"flow": "booking", "sub": "customer-7", "exp": 1_800_000_000u64, "nonce": "n"})
        );
        let anonymous: Claims =
            serde_json::from_value(json!({"flow": "f", "exp": 1, "nonce": "n"})).unwrap();
        assert_eq!(anonymous.subject, None);
        assert!(!serde_json::to_string(&anonymous).unwrap().contains("sub"));
    }
}
