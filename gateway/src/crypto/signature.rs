//! Request authentication with the app secret(s): the body's `X-Hub-Signature-256`
//! and the payload's `flow_token_signature` (a JWT, HS256). Comparisons are
//! constant-time (aws-lc-rs `hmac::verify`).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// One or more app secrets; several during a rotation.
#[derive(Clone)]
pub struct AppSecrets {
    keys: Vec<hmac::Key>,
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
        Self {
            keys: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_ref()))
                .collect(),
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

    /// Checks a compact JWT signed with HS256 by any secret. `now` (Unix seconds)
    /// is compared with `exp` when the claims carry one.
    pub fn verify_jwt(&self, jwt: &str, now: u64) -> TokenSignature {
        let valid = (|| {
            let (signed, signature) = jwt.rsplit_once('.')?;
            let (header, claims) = signed.split_once('.')?;
            let header: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
            if header.get("alg")?.as_str()? != "HS256" {
                return None;
            }
            let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
            if !self
                .keys
                .iter()
                .any(|key| hmac::verify(key, signed.as_bytes(), &signature).is_ok())
            {
                return None;
            }
            let claims: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
            match claims.get("exp") {
                None => Some(()),
                Some(exp) => (exp.as_f64()? > now as f64).then_some(()),
            }
        })();
        if valid.is_some() {
            TokenSignature::Valid
        } else {
            TokenSignature::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
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
            (jwt(b"s1", header, r#"{"exp":2000}"#), TokenSignature::Valid),
            (
                jwt(b"s1", header, r#"{"exp":1000}"#),
                TokenSignature::Invalid,
            ),
            (jwt(b"s2", header, r#"{}"#), TokenSignature::Invalid),
            (
                jwt(b"s1", r#"{"alg":"none"}"#, r#"{}"#),
                TokenSignature::Invalid,
            ),
            ("not.a.jwt".to_owned(), TokenSignature::Invalid),
            ("garbage".to_owned(), TokenSignature::Invalid),
        ];
        for (token, expected) in cases {
            assert_eq!(secrets.verify_jwt(&token, 1500), expected, "{token}");
        }
    }
}
