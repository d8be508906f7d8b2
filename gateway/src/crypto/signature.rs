//! Request authentication with the app secret(s): the body's `X-Hub-Signature-256`
//! (HMAC-SHA256, compared in constant time by aws-lc-rs `hmac::verify`) and the
//! payload's `flow_token_signature` (a JWT, checked by `jsonwebtoken` on its aws-lc-rs
//! backend, HS256 only).

use aws_lc_rs::hmac;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// One or more app secrets; several during a rotation.
#[derive(Clone)]
pub struct AppSecrets {
    /// For the body signature.
    keys: Vec<hmac::Key>,
    /// The same secrets, for `flow_token_signature`.
    jwt_keys: Vec<DecodingKey>,
    /// HS256 only, nothing else checked by the crate: `exp` is compared with the
    /// caller's clock below, so the check is exact (no leeway) and testable.
    validation: Validation,
}

impl std::fmt::Debug for AppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppSecrets({} configured)", self.keys.len())
    }
}

/// The outcome of checking a `flow_token_signature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSignature {
    Valid,
    Invalid,
}

impl AppSecrets {
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Self {
        // The allow-list is HS256 alone: a token naming any other algorithm (`none`,
        // RS256 with the secret as a "public key", ...) is refused before any check.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Self {
            keys: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_ref()))
                .collect(),
            jwt_keys: secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.as_ref()))
                .collect(),
            validation,
        }
    }

    /// Checks `X-Hub-Signature-256: sha256=<hex>` over the raw body against every secret.
    pub fn verify_body(&self, header: Option<&[u8]>, body: &[u8]) -> bool {
        let Some(signature) = header
            .and_then(|h| h.strip_prefix(b"sha256="))
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        self.keys
            .iter()
            .any(|key| hmac::verify(key, body, &signature).is_ok())
    }

    /// Checks a compact JWT signed with HS256 by any secret.
    ///
    /// - `now` (Unix seconds) must be before `exp` when the claims carry one; a token
    ///   without `exp` does not expire.
    /// - When the claims carry a `flow_token`, it must equal the request's
    ///   `flow_token`: a signature issued for another token proves nothing about this one.
    pub fn verify_jwt(&self, jwt: &str, flow_token: Option<&str>, now: u64) -> TokenSignature {
        let Some(claims) = self.jwt_keys.iter().find_map(|key| {
            jsonwebtoken::decode::<Map<String, Value>>(jwt, key, &self.validation)
                .ok()
                .map(|data| data.claims)
        }) else {
            return TokenSignature::Invalid;
        };
        let unexpired = match claims.get("exp") {
            None => true,
            Some(exp) => exp.as_f64().is_some_and(|exp| exp > now as f64),
        };
        let same_token = match claims.get("flow_token") {
            None => true,
            Some(claimed) => flow_token.is_some_and(|token| claimed.as_str() == Some(token)),
        };
        if unexpired && same_token {
            TokenSignature::Valid
        } else {
            TokenSignature::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn jwt(secret: &[u8], header: &str, claims: &str) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            signed.as_bytes(),
        );
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    #[test]
    fn body_signatures() {
        let secrets = AppSecrets::new(&["old-secret", "new-secret"]);
        let body = br#"{"encrypted_flow_data":"x"}"#;
        let sign = |secret: &str| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), body);
            format!("sha256={}", hex::encode(tag))
        };
        assert!(secrets.verify_body(Some(sign("old-secret").as_bytes()), body));
        assert!(secrets.verify_body(Some(sign("new-secret").as_bytes()), body));
        assert!(!secrets.verify_body(Some(sign("other").as_bytes()), body));
        assert!(!secrets.verify_body(Some(sign("new-secret").as_bytes()), b"{}"));
        assert!(!secrets.verify_body(None, body));
        assert!(!secrets.verify_body(Some(b"sha256=zz"), body));
        assert!(!secrets.verify_body(
            Some(sign("new-secret").replace("sha256=", "sha1=").as_bytes()),
            body
        ));
        assert_eq!(format!("{secrets:?}"), "AppSecrets(2 configured)");
    }

    #[test]
    fn token_signatures() {
        let secrets = AppSecrets::new(&["s1"]);
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let cases = [
            (
                jwt(b"s1", header, r#"{"flow_token":"t"}"#),
                TokenSignature::Valid,
            ),
            (jwt(b"s1", header, r#"{}"#), TokenSignature::Valid),
            (jwt(b"s1", header, r#"{"exp":2000}"#), TokenSignature::Valid),
            (
                jwt(b"s1", header, r#"{"exp":1500.5}"#),
                TokenSignature::Valid,
            ),
            // No leeway: expired at the second it names.
            (
                jwt(b"s1", header, r#"{"exp":1500}"#),
                TokenSignature::Invalid,
            ),
            (
                jwt(b"s1", header, r#"{"exp":1000}"#),
                TokenSignature::Invalid,
            ),
            (
                jwt(b"s1", header, r#"{"exp":"2000"}"#),
                TokenSignature::Invalid,
            ),
            (jwt(b"s2", header, r#"{}"#), TokenSignature::Invalid),
            (
                jwt(b"s1", r#"{"alg":"none"}"#, r#"{}"#),
                TokenSignature::Invalid,
            ),
            // Signed with the right secret, but HS256 is the only algorithm allowed.
            (
                jwt(b"s1", r#"{"alg":"HS512","typ":"JWT"}"#, r#"{}"#),
                TokenSignature::Invalid,
            ),
            ("not.a.jwt".to_owned(), TokenSignature::Invalid),
            ("garbage".to_owned(), TokenSignature::Invalid),
            (String::new(), TokenSignature::Invalid),
        ];
        for (token, expected) in cases {
            assert_eq!(
                secrets.verify_jwt(&token, Some("t"), 1500),
                expected,
                "{token}"
            );
        }
    }

    /// A JWT whose claims name a flow token is valid only for that token.
    #[test]
    fn token_signatures_are_bound_to_their_flow_token() {
        let secrets = AppSecrets::new(&["s1"]);
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let issued_for_t = jwt(b"s1", header, r#"{"flow_token":"t"}"#);
        let cases = [
            (&issued_for_t, Some("t"), TokenSignature::Valid),
            (&issued_for_t, Some("other"), TokenSignature::Invalid),
            (&issued_for_t, Some("T"), TokenSignature::Invalid),
            (&issued_for_t, None, TokenSignature::Invalid),
            (
                &jwt(b"s1", header, r#"{"flow_token":7}"#),
                Some("7"),
                TokenSignature::Invalid,
            ),
            (
                &jwt(b"s1", header, r#"{"flow_token":null}"#),
                Some("t"),
                TokenSignature::Invalid,
            ),
            // Without the claim the token signature says nothing about the token: valid.
            (
                &jwt(b"s1", header, r#"{"sub":"x"}"#),
                Some("other"),
                TokenSignature::Valid,
            ),
        ];
        for (token, flow_token, expected) in cases {
            assert_eq!(
                secrets.verify_jwt(token, flow_token, 1500),
                expected,
                "{token} for {flow_token:?}"
            );
        }
    }

    /// During a rotation a JWT signed with either secret is valid.
    #[test]
    fn token_signatures_accept_every_configured_secret() {
        let secrets = AppSecrets::new(&["old-secret", "new-secret"]);
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        for secret in ["old-secret", "new-secret"] {
            let token = jwt(secret.as_bytes(), header, r#"{"flow_token":"t"}"#);
            assert_eq!(
                secrets.verify_jwt(&token, Some("t"), 0),
                TokenSignature::Valid,
                "{secret}"
            );
        }
        let token = jwt(b"retired-secret", header, r#"{"flow_token":"t"}"#);
        assert_eq!(
            secrets.verify_jwt(&token, Some("t"), 0),
            TokenSignature::Invalid
        );
    }
}
