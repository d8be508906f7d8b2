//! `signed_token`: the flow service's signed flow tokens (`tokens::verify` of
//! `v1.<claims>.<mac>`) and the gateway's `flow_token_signature` JWT check
//! (`AppSecrets::verify_jwt`, HS256 only). Since the fuzzer cannot forge a MAC, some
//! modes have the target sign what the fuzzer wrote, so the parsing behind the MAC is
//! reached too.
//!
//! Input: `mode ‖ …`, by `mode % 6`:
//! - 0: the rest is a flow token;
//! - 1: the rest is the signed part of a flow token; the target appends its MAC;
//! - 2: the rest is the claims JSON; the target makes `v1.<base64url>` and signs it;
//! - 3: `flow (1-byte length) ‖ subject (1-byte length, empty: none) ‖ ttl (u16)`:
//!   `tokens::issue`, then `verify` (must accept, then refuse once expired or for
//!   another flow);
//! - 4: `flow_token (1-byte length) ‖ JWT`;
//! - 5: `flow_token (1-byte length) ‖ header JSON (2-byte length) ‖ claims JSON`: the
//!   target signs the JWT with the app secret.

#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use flowgate_fuzz::{Reader, pywa_app_secret, text};
use flowgate_gateway::crypto::signature::{AppSecrets, TokenSignature};
use flowgate_server::tokens::{self, Secret, TokenError};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const FLOW: &str = "booking";
const NOW: u64 = 1_800_000_000;

static TOKEN_SECRET: LazyLock<Secret> =
    LazyLock::new(|| Secret::new(SECRET).expect("32 bytes are enough"));
static MAC_KEY: LazyLock<hmac::Key> = LazyLock::new(|| hmac::Key::new(hmac::HMAC_SHA256, SECRET));
static APP_SECRETS: LazyLock<AppSecrets> =
    LazyLock::new(|| AppSecrets::new(&["an-older-app-secret", pywa_app_secret()]));

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn sign(signed: &str) -> String {
    format!(
        "{signed}.{}",
        B64.encode(hmac::sign(&MAC_KEY, signed.as_bytes()))
    )
}

/// Verifies a flow token, and checks what an accepted one must say.
fn verify(token: &str) {
    match tokens::verify(&TOKEN_SECRET, token, FLOW, now()) {
        Ok(claims) => {
            assert_eq!(claims.flow, FLOW);
            assert!(claims.expires_at > NOW);
            assert!(token.starts_with("v1."));
            // The same token for another flow, or later, is refused.
            assert_eq!(
                tokens::verify(&TOKEN_SECRET, token, "signup", now()),
                Err(TokenError::OtherFlow)
            );
            let expired = UNIX_EPOCH + Duration::from_secs(claims.expires_at);
            assert_eq!(
                tokens::verify(&TOKEN_SECRET, token, FLOW, expired),
                Err(TokenError::Expired)
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Checks a JWT, and what a valid one must be: HS256, unexpired, for this flow token.
fn verify_jwt(jwt: &str, flow_token: &str) {
    let flow_token = Some(flow_token).filter(|t| !t.is_empty());
    if APP_SECRETS.verify_jwt(jwt, flow_token, NOW) == TokenSignature::Invalid {
        return;
    }
    let part = |i: usize| -> Option<Map<String, Value>> {
        let bytes = B64.decode(jwt.split('.').nth(i)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    if let Some(header) = part(0) {
        assert_eq!(header.get("alg"), Some(&Value::from("HS256")), "{header:?}");
    }
    if let Some(claims) = part(1) {
        if let Some(exp) = claims.get("exp") {
            assert!(exp.as_f64().is_some_and(|exp| exp > NOW as f64), "{exp}");
        }
        if let Some(claimed) = claims.get("flow_token") {
            assert_eq!(claimed.as_str(), flow_token);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    match input.byte() % 6 {
        0 => {
            let Some(token) = text(input.rest()) else {
                return;
            };
            verify(token);
        }
        1 => {
            let Some(signed) = text(input.rest()) else {
                return;
            };
            verify(&sign(signed));
        }
        2 => {
            let token = sign(&format!("v1.{}", B64.encode(input.rest())));
            verify(&token);
        }
        3 => {
            let (Some(flow), Some(subject)) = (text(input.short()), text(input.short())) else {
                return;
            };
            let subject = Some(subject).filter(|s| !s.is_empty());
            let ttl = Duration::from_secs(u64::from(input.u16()).max(1));
            let token = tokens::issue(&TOKEN_SECRET, flow, subject, ttl, now());
            let claims = tokens::verify(&TOKEN_SECRET, &token, flow, now())
                .expect("an issued token verifies");
            assert_eq!(
                (claims.flow.as_str(), claims.subject.as_deref()),
                (flow, subject)
            );
            assert_eq!(claims.expires_at, NOW + ttl.as_secs());
            assert_eq!(
                tokens::verify(&TOKEN_SECRET, &token, flow, now() + ttl),
                Err(TokenError::Expired)
            );
            if flow != FLOW {
                assert_eq!(
                    tokens::verify(&TOKEN_SECRET, &token, FLOW, now()),
                    Err(TokenError::OtherFlow)
                );
            }
        }
        4 => {
            let Some(flow_token) = text(input.short()) else {
                return;
            };
            let Some(jwt) = text(input.rest()) else {
                return;
            };
            verify_jwt(jwt, flow_token);
        }
        _ => {
            let Some(flow_token) = text(input.short()) else {
                return;
            };
            let header = input.long();
            let signed = format!("{}.{}", B64.encode(header), B64.encode(input.rest()));
            let key = hmac::Key::new(hmac::HMAC_SHA256, pywa_app_secret().as_bytes());
            let jwt = format!(
                "{signed}.{}",
                B64.encode(hmac::sign(&key, signed.as_bytes()))
            );
            verify_jwt(&jwt, flow_token);
        }
    }
});
