//! Signed flow tokens: which flow a token opens, for whom, and until when, under a MAC
//! only the business can make.
//!
//! A token is `v1.<payload>.<mac>`: `payload` is the base64url (no padding) of the JSON
//! [`Claims`] `{"flow", "sub"?, "exp", "nonce"}`, and `mac` the base64url of
//! HMAC-SHA256(secret, `v1.<payload>`). The nonce makes every token unique, so two
//! tokens issued for the same flow and subject in the same second still complete
//! separately. A business issues one per Flow message it sends ([`issue`], or
//! `flow-service issue-token`); the service [`verify`]s it on every request under
//! [`TokenPolicy::Signed`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

// The claims are the SDK's, so that flows read them without this crate.
pub use flowgate_sdk::Claims;

const PREFIX: &str = "v1.";

/// The shortest secret accepted: the MAC is only as strong as its key.
pub const MIN_SECRET_LEN: usize = 32;

/// Why a token was refused. Each is answered "token no longer valid" (HTTP 427); the
/// reason is for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a signed flowgate token")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token was issued for another flow")]
    OtherFlow,
}

/// The key tokens are signed with. Its value never appears in `Debug` output or logs.
/// Shared, as every request of every flow checks against the one key.
#[derive(Clone)]
pub struct Secret(std::sync::Arc<hmac::Key>);

/// A secret shorter than [`MIN_SECRET_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secret has {0} bytes; use at least {MIN_SECRET_LEN} random bytes")]
pub struct WeakSecret(pub usize);

impl Secret {
    pub fn new(secret: &[u8]) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(WeakSecret(secret.len()));
        }
        Ok(Secret(std::sync::Arc::new(hmac::Key::new(
            hmac::HMAC_SHA256,
            secret,
        ))))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which flow tokens the service accepts on `INIT`, `data_exchange` and `BACK`.
/// Error notifications are acknowledged under either policy.
#[derive(Debug, Clone, Default)]
pub enum TokenPolicy {
    /// Any non-empty token: the business keeps its own tokens.
    #[default]
    Open,
    /// Only tokens made by [`issue`] with this secret, for the flow being run, unexpired.
    Signed(Secret),
}

/// A new token for `flow`, valid for `ttl` from `now`.
pub fn issue(
    secret: &Secret,
    flow: &str,
    subject: Option<&str>,
    ttl: Duration,
    now: SystemTime,
) -> String {
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system's random source works");
    let claims = Claims {
        flow: flow.to_owned(),
        subject: subject.map(str::to_owned),
        expires_at: unix(now).saturating_add(ttl.as_secs()),
        nonce: B64.encode(nonce),
    };
    let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialise"));
    let signed = format!("{PREFIX}{payload}");
    let mac = hmac::sign(&secret.0, signed.as_bytes());
    format!("{signed}.{}", B64.encode(mac.as_ref()))
}

/// Checks `token` for `flow` at `now`: its MAC first (in constant time), then the
/// claims it carries.
pub fn verify(
    secret: &Secret,
    token: &str,
    flow: &str,
    now: SystemTime,
) -> Result<Claims, TokenError> {
    let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let payload = signed.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let mac = B64.decode(mac).map_err(|_| TokenError::Malformed)?;
    hmac::verify(&secret.0, signed.as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
    let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.flow != flow {
        return Err(TokenError::OtherFlow);
    }
    if unix(now) >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn a_token_verifies_for_its_flow_until_it_expires() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ttl = Duration::from_secs(900);
        let token = issue(&secret(), "booking", Some("customer-7"), ttl, now);
        assert!(token.starts_with("v1."), "{token}");
        let claims = verify(&secret(), &token, "booking", now).unwrap();
        assert_eq!(claims.flow, "booking");
        assert_eq!(claims.subject.as_deref(), Some("customer-7"));
        assert_eq!(claims.expires_at, 1_800_000_900);
        let almost = now + ttl - Duration::from_secs(1);
        assert!(verify(&secret(), &token, "booking", almost).is_ok());

        // Every refusal, one case each.
        let other_secret = Secret::new(&[7u8; 32]).unwrap();
        let (signed, mac) = token.rsplit_once('.').unwrap();
        let forged_claims = B64.encode(
            serde_json::to_vec(&Claims {
                expires_at: u64::MAX,
                ..claims.clone()
            })
            .unwrap(),
        );
        let cases: [(&str, String, &str, SystemTime, TokenError); 7] = [
            (
                "expired",
                token.clone(),
                "booking",
                now + ttl,
                TokenError::Expired,
            ),
            (
                "other flow",
                token.clone(),
                "signup",
                now,
                TokenError::OtherFlow,
            ),
            (
                "unsigned",
                "tok-1".into(),
                "booking",
                now,
                TokenError::Malformed,
            ),
            (
                "empty",
                String::new(),
                "booking",
                now,
                TokenError::Malformed,
            ),
            (
                "payload changed",
                format!("v1.{forged_claims}.{mac}"),
                "booking",
                now,
                TokenError::BadSignature,
            ),
            (
                "mac changed",
                format!("{signed}.{}", B64.encode([0u8; 32])),
                "booking",
                now,
                TokenError::BadSignature,
            ),
            (
                "other secret",
                issue(&other_secret, "booking", None, ttl, now),
                "booking",
                now,
                TokenError::BadSignature,
            ),
        ];
        for (name, token, flow, at, expected) in cases {
            assert_eq!(verify(&secret(), &token, flow, at), Err(expected), "{name}");
        }
    }

    #[test]
    fn tokens_are_unique_and_secrets_stay_hidden() {
        let now = SystemTime::now();
        let a = issue(&secret(), "f", None, Duration::from_secs(60), now);
        let b = issue(&secret(), "f", None, Duration::from_secs(60), now);
        assert_ne!(a, b);
        assert!(!a.contains('=') && !a.contains('+') && !a.contains('/'));
        assert_eq!(format!("{:?}", secret()), "Secret(***)");
        assert_eq!(Secret::new(b"short").unwrap_err(), WeakSecret(5));
    }
}
