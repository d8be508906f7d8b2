//! How request and answer bodies are wrapped on the wire. Pure: no I/O (keys are
//! read by [`Envelope::load`] at start, never at request time).
//!
//! [`Envelope::open`] turns the raw body into the JSON payload and a [`Sealer`]
//! that wraps every answer to that request, errors included, the same way.
//!
//! Meta's encrypted endpoint (`mode = meta`):
//! 1. `X-Hub-Signature-256` must be `sha256=` + hex HMAC-SHA256 of the raw body with
//!    an app secret, when any is configured → else 432.
//! 2. The body is `{"encrypted_flow_data","encrypted_aes_key","initial_vector"}`, all
//!    base64; the AES-128 key is RSA-OAEP (SHA-256, MGF1-SHA-256) under one of the
//!    private keys; the payload is AES-128-GCM with the 16-byte IV, tag appended.
//!    Any failure here → 421, so the client re-fetches the public key and retries;
//!    that includes an AES key of any length but 16 bytes.
//! 3. Every answer is AES-128-GCM under the same key with the IV's bytes inverted,
//!    tag appended, base64, sent as a `text/plain` body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{MetaConfig, ModeConfig};
use zeroize::Zeroizing;

use crate::crypto::aead;
use crate::crypto::keys::{KeyError, PrivateKey};
use crate::crypto::signature::{AppSecrets, TokenSignature};
use crate::error::GatewayError;

/// The header Meta signs request bodies in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The wrapping a route uses.
#[derive(Debug, Clone)]
pub enum Envelope {
    /// JSON in, JSON out (`Content-Type: application/json`).
    Plain,
    /// Meta's encrypted endpoint.
    Meta(Arc<Meta>),
}

/// The keys and secrets of a Meta route.
#[derive(Debug)]
pub struct Meta {
    keys: Vec<PrivateKey>,
    /// `None`: signatures are not checked.
    secrets: Option<AppSecrets>,
}

/// A key file that could not be used at start.
#[derive(Debug, thiserror::Error)]
#[error("private key {path}: {reason}")]
pub struct LoadError {
    pub path: String,
    pub reason: String,
}

impl Meta {
    pub fn new(keys: Vec<PrivateKey>, secrets: Option<AppSecrets>) -> Self {
        Self { keys, secrets }
    }
}

/// What opening a request yields.
#[derive(Debug)]
pub struct Opened {
    pub payload: Bytes,
    pub sealer: Sealer,
    /// The body's signature was checked against a configured app secret and matched.
    pub signature_verified: bool,
}

/// The encrypted request body.
#[derive(Deserialize)]
struct EncryptedRequest {
    encrypted_flow_data: String,
    encrypted_aes_key: String,
    initial_vector: String,
}

impl Envelope {
    /// Builds the envelope of a route, reading its key files.
    pub fn load(mode: &ModeConfig) -> Result<Self, LoadError> {
        let MetaConfig {
            private_keys,
            passphrase,
            app_secrets,
        } = match mode {
            ModeConfig::Plain => return Ok(Envelope::Plain),
            ModeConfig::Meta(meta) => meta,
        };
        let mut keys = Vec::with_capacity(private_keys.len());
        for path in private_keys {
            let fail = |reason: String| LoadError {
                path: path.display().to_string(),
                reason,
            };
            let pem =
                std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
            let key =
                PrivateKey::from_pem(&pem, passphrase.as_ref().map(|p| p.expose().as_bytes()))
                    .map_err(|e: KeyError| fail(e.to_string()))?;
            keys.push(key);
        }
        let secrets = (!app_secrets.is_empty())
            .then(|| AppSecrets::new(&app_secrets.iter().map(|s| s.expose()).collect::<Vec<_>>()));
        Ok(Envelope::Meta(Arc::new(Meta::new(keys, secrets))))
    }

    /// Unwraps a request body: [`Envelope::check_signature`], then
    /// [`Envelope::open_checked`].
    pub fn open(&self, headers: &HeaderMap, body: Bytes) -> Result<Opened, GatewayError> {
        let signature_verified = self.check_signature(headers, &body)?;
        self.open_checked(body, signature_verified)
    }

    /// Meta mode: checks `X-Hub-Signature-256` over the raw body. `Ok(true)`: it
    /// matched a configured app secret; `Ok(false)`: there was nothing to check against
    /// (plain mode, or no app secret configured).
    pub fn check_signature(&self, headers: &HeaderMap, body: &[u8]) -> Result<bool, GatewayError> {
        let Envelope::Meta(meta) = self else {
            return Ok(false);
        };
        let Some(secrets) = &meta.secrets else {
            return Ok(false);
        };
        let header = headers.get(SIGNATURE_HEADER).map(HeaderValue::as_bytes);
        if !secrets.verify_body(header, body) {
            return Err(GatewayError::InvalidSignature);
        }
        Ok(true)
    }

    /// Unwraps a request body whose signature has been checked already
    /// ([`Envelope::check_signature`]).
    pub fn open_checked(
        &self,
        body: Bytes,
        signature_verified: bool,
    ) -> Result<Opened, GatewayError> {
        let meta = match self {
            Envelope::Plain => {
                return Ok(Opened {
                    payload: body,
                    sealer: Sealer::Plain,
                    signature_verified: false,
                });
            }
            Envelope::Meta(meta) => meta,
        };
        let (payload, sealer) = meta
            .decrypt(&body)
            .map_err(|reason| GatewayError::CannotDecrypt(reason.into()))?;
        Ok(Opened {
            payload: payload.into(),
            sealer,
            signature_verified,
        })
    }

    /// Checks a `flow_token_signature` with the route's app secrets, for the
    /// request's `flow_token` (a JWT whose claims name another token is invalid).
    pub fn check_token_signature(
        &self,
        jwt: &str,
        flow_token: Option<&str>,
        now: u64,
    ) -> flowgate_proto::v1::FlowTokenSignature {
        use flowgate_proto::v1::FlowTokenSignature as S;
        match self {
            Envelope::Meta(meta) => match &meta.secrets {
                Some(secrets) => match secrets.verify_jwt(jwt, flow_token, now) {
                    TokenSignature::Valid => S::Valid,
                    TokenSignature::Invalid => S::Invalid,
                },
                None => S::Unchecked,
            },
            Envelope::Plain => S::Unchecked,
        }
    }
}

impl Meta {
    /// Decrypts an encrypted request body. The error names the failed step, for the log.
    fn decrypt(&self, body: &[u8]) -> Result<(Vec<u8>, Sealer), &'static str> {
        let request: EncryptedRequest = serde_json::from_slice(body)
            .map_err(|_| "the body is not the encrypted request object")?;
        let encrypted_key = STANDARD
            .decode(&request.encrypted_aes_key)
            .map_err(|_| "encrypted_aes_key is not base64")?;
        let iv = STANDARD
            .decode(&request.initial_vector)
            .map_err(|_| "initial_vector is not base64")?;
        let iv: [u8; 16] = iv
            .try_into()
            .map_err(|_| "initial_vector is not 16 bytes")?;
        let sealed = STANDARD
            .decode(&request.encrypted_flow_data)
            .map_err(|_| "encrypted_flow_data is not base64")?;
        let aes_key = self
            .keys
            .iter()
            .find_map(|key| key.decrypt(&encrypted_key))
            .map(Zeroizing::new)
            .ok_or("encrypted_aes_key does not decrypt with any private key")?;
        // The protocol is AES-128: a key of another length is refused like any key
        // that does not decrypt, so the client starts over with the right public key.
        let key = aead::Key::new(&aes_key).map_err(|_| "the AES key is not 16 bytes")?;
        let payload = key
            .open(&iv, &[], &sealed)
            .map_err(|_| "encrypted_flow_data fails authentication")?;
        Ok((
            payload,
            Sealer::Meta {
                key: Box::new(key),
                iv: iv.map(|b| !b),
            },
        ))
    }
}

/// Wraps the answers to one opened request.
#[derive(Debug)]
pub enum Sealer {
    Plain,
    /// The request's AES key and the inverted IV.
    Meta {
        key: Box<aead::Key>,
        iv: [u8; 16],
    },
}

impl Sealer {
    /// Wraps an answer.
    pub fn seal(&self, status: StatusCode, answer: &Value) -> Response {
        match self {
            Sealer::Plain => (status, axum::Json(answer)).into_response(),
            Sealer::Meta { key, iv } => {
                let plaintext = serde_json::to_vec(answer).expect("JSON values serialise");
                let sealed = key
                    .seal(iv, &[], &plaintext)
                    .expect("an answer is far below AES-GCM's 64 GiB limit");
                let mut response = (status, STANDARD.encode(sealed)).into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                response
            }
        }
    }

    /// Wraps an error answer.
    pub fn seal_error(&self, error: GatewayError) -> Response {
        match self {
            Sealer::Plain => error.into_response(),
            Sealer::Meta { .. } => {
                error.log();
                let mut response = self.seal(error.status(), &error.body());
                if let Some(retry_after) = error.retry_after() {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, retry_after);
                }
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};

    use super::*;
    use crate::crypto::keys;

    /// RSA-OAEP-SHA256 of `aes_key` under the public key, as a WhatsApp client does.
    fn wrap_key(public_key_der: &[u8], aes_key: &[u8]) -> Vec<u8> {
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_key_der).unwrap())
                .unwrap();
        let mut out = vec![0u8; public.ciphertext_size()];
        public
            .encrypt(&OAEP_SHA256_MGF1SHA256, aes_key, &mut out, None)
            .unwrap()
            .to_vec()
    }

    fn body(encrypted_key: &[u8], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
        serde_json::json!({
            "encrypted_flow_data": STANDARD.encode(data),
            "encrypted_aes_key": STANDARD.encode(encrypted_key),
            "initial_vector": STANDARD.encode(iv),
        })
        .to_string()
        .into_bytes()
    }

    /// Seals a payload as a WhatsApp client does; returns the body and the AES key and IV.
    fn seal(public_key_der: &[u8], payload: &[u8]) -> (Vec<u8>, [u8; 16], [u8; 16]) {
        let rng = SystemRandom::new();
        let (mut aes_key, mut iv) = ([0u8; 16], [0u8; 16]);
        rng.fill(&mut aes_key).unwrap();
        rng.fill(&mut iv).unwrap();
        let data = aead::Key::new(&aes_key)
            .unwrap()
            .seal(&iv, &[], payload)
            .unwrap();
        let encrypted_key = wrap_key(public_key_der, &aes_key);
        (body(&encrypted_key, &iv, &data), aes_key, iv)
    }

    fn meta(secrets: Option<AppSecrets>) -> (Envelope, Vec<u8>) {
        let generated = keys::generate(None).unwrap();
        let key = PrivateKey::from_pem(&generated.private_pem, None).unwrap();
        let public_der = STANDARD
            .decode(
                generated
                    .public_pem
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        (
            Envelope::Meta(Arc::new(Meta::new(vec![key], secrets))),
            public_der,
        )
    }

    #[test]
    fn meta_round_trip_and_failures() {
        let (envelope, public) = meta(None);
        let (body, aes_key, iv) = seal(&public, br#"{"action":"ping"}"#);
        let opened = envelope
            .open(&HeaderMap::new(), body.clone().into())
            .unwrap();
        assert_eq!(&opened.payload[..], br#"{"action":"ping"}"#);
        assert!(!opened.signature_verified);

        // The answer is sealed with the same key and the inverted IV.
        let response = opened.sealer.seal(
            StatusCode::OK,
            &serde_json::json!({"data": {"status": "active"}}),
        );
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain");
        let Sealer::Meta { key, iv: flipped } = &opened.sealer else {
            panic!("meta sealer")
        };
        assert_eq!(flipped, &iv.map(|b| b ^ 0xff));
        let again = aead::Key::new(&aes_key)
            .unwrap()
            .seal(flipped, &[], br#"{"data":{"status":"active"}}"#)
            .unwrap();
        assert_eq!(
            key.seal(flipped, &[], br#"{"data":{"status":"active"}}"#)
                .unwrap(),
            again
        );
        // The answer's body is that, in base64: sealed under the client's key.
        let sent = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap();
        assert_eq!(sent, STANDARD.encode(&again).as_bytes());

        let refusals: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "cannot_decrypt"),
            (br#"{"encrypted_flow_data":"x"}"#.to_vec(), "cannot_decrypt"),
            (
                String::from_utf8(body.clone())
                    .unwrap()
                    .replace("\"initial_vector\":\"", "\"initial_vector\":\"AAAA")
                    .into_bytes(),
                "cannot_decrypt",
            ),
        ];
        for (body, code) in refusals {
            let err = envelope.open(&HeaderMap::new(), body.into()).unwrap_err();
            assert_eq!((err.code(), err.status().as_u16()), (code, 421));
        }
    }

    /// Meta's protocol is AES-128. A payload sealed with AES-256-GCM under a 32-byte
    /// key, itself properly wrapped with the route's public key, is refused with 421.
    #[test]
    fn a_32_byte_aes_key_is_refused() {
        use aes_gcm::aead::consts::U16;
        use aes_gcm::aead::{Aead, KeyInit};
        use aes_gcm::aes::Aes256;

        let (envelope, public) = meta(None);
        let (aes_key, iv) = ([0x42u8; 32], [0x24u8; 16]);
        let data = aes_gcm::AesGcm::<Aes256, U16>::new_from_slice(&aes_key)
            .unwrap()
            .encrypt(
                aes_gcm::Nonce::<U16>::from_slice(&iv),
                &br#"{"action":"ping"}"#[..],
            )
            .unwrap();
        let request = body(&wrap_key(&public, &aes_key), &iv, &data);
        let err = envelope
            .open(&HeaderMap::new(), request.into())
            .unwrap_err();
        assert_eq!((err.code(), err.status().as_u16()), ("cannot_decrypt", 421));

        // The same envelope opens a 16-byte key's request: only the key length differs.
        let (request, _, _) = seal(&public, br#"{"action":"ping"}"#);
        assert!(envelope.open(&HeaderMap::new(), request.into()).is_ok());
    }
}
