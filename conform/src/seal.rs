//! Meta's encryption, from WhatsApp's side: seal a request with the endpoint's public
//! key, sign the body with the app secret, open the answer.
//!
//! A request: a fresh AES-128 key wrapped with RSA-OAEP (SHA-256 for the hash and
//! MGF1, no label); the payload sealed with AES-128-GCM under a fresh 16-byte IV, the
//! tag appended; the three fields base64. The answer is sealed with the same key and
//! the IV with every byte inverted, and sent as base64 text.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes128;
use aes_gcm::{AesGcm, Nonce};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

/// AES-128-GCM with the 16-byte nonce Meta uses (aws-lc-rs takes only 12).
type Aes128Gcm16 = AesGcm<Aes128, U16>;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the public key is not a PEM `PUBLIC KEY` (SubjectPublicKeyInfo): {0}")]
    Pem(String),
    #[error("the public key is not an RSA key aws-lc-rs accepts: {0}")]
    Key(String),
    #[error("encryption failed")]
    Encrypt,
}

/// Seals requests for one endpoint.
pub struct Sealer {
    key: OaepPublicEncryptingKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

/// A sealed request: the body to send, and what opens its answer.
pub struct Sealed {
    pub body: Vec<u8>,
    key: [u8; 16],
    iv: [u8; 16],
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn from_pem(pem: &str) -> Result<Self, SealError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| SealError::Pem(e.to_string()))?;
        let key = PublicEncryptingKey::from_der(der.as_ref())
            .map_err(|e| SealError::Key(e.to_string()))?;
        let key = OaepPublicEncryptingKey::new(key).map_err(|e| SealError::Key(e.to_string()))?;
        Ok(Self { key })
    }

    /// The size of a wrapped key, to build one that will not unwrap.
    pub fn wrapped_key_len(&self) -> usize {
        self.key.ciphertext_size()
    }

    pub fn seal(&self, payload: &Value) -> Result<Sealed, SealError> {
        let mut key = [0u8; 16];
        let mut iv = [0u8; 16];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| SealError::Encrypt)?;
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| SealError::Encrypt)?;
        let mut wrapped = vec![0u8; self.key.ciphertext_size()];
        let wrapped = self
            .key
            .encrypt(&OAEP_SHA256_MGF1SHA256, &key, &mut wrapped, None)
            .map_err(|_| SealError::Encrypt)?;
        let cipher = Aes128Gcm16::new(&key.into());
        let sealed = cipher
            .encrypt(
                Nonce::<U16>::from_slice(&iv),
                payload.to_string().as_bytes(),
            )
            .map_err(|_| SealError::Encrypt)?;
        let body = json!({
            "encrypted_flow_data": STANDARD.encode(sealed),
            "encrypted_aes_key": STANDARD.encode(wrapped),
            "initial_vector": STANDARD.encode(iv),
        });
        Ok(Sealed {
            body: body.to_string().into_bytes(),
            key,
            iv,
        })
    }
}

impl Sealed {
    /// Opens an answer: base64 text, sealed with the request's key and inverted IV.
    pub fn open(&self, body: &str) -> Result<Vec<u8>, &'static str> {
        let bytes = STANDARD
            .decode(body.trim())
            .map_err(|_| "the answer is not base64")?;
        let iv = self.iv.map(|b| !b);
        Aes128Gcm16::new(&self.key.into())
            .decrypt(Nonce::<U16>::from_slice(&iv), bytes.as_slice())
            .map_err(|_| "the answer does not open with the request's key and inverted IV")
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the `X-Hub-Signature-256` header.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(aws_lc_rs::hmac::sign(&key, body).as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_pem() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/keys/pkcs1.pub.pem"
        ))
        .unwrap()
    }

    #[test]
    fn a_sealed_request_has_the_three_base64_fields() {
        let sealer = Sealer::from_pem(&public_pem()).unwrap();
        let sealed = sealer.seal(&json!({"action": "ping"})).unwrap();
        let body: Value = serde_json::from_slice(&sealed.body).unwrap();
        let field = |name: &str| STANDARD.decode(body[name].as_str().unwrap()).unwrap();
        assert_eq!(field("initial_vector").len(), 16);
        assert_eq!(field("encrypted_aes_key").len(), 256);
        // 16 bytes of tag after the payload.
        assert_eq!(
            field("encrypted_flow_data").len(),
            r#"{"action":"ping"}"#.len() + 16
        );
        assert!(sealed.open("bm90IHNlYWxlZA==").is_err());
    }

    #[test]
    fn signatures_are_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
