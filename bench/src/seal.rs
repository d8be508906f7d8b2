//! The WhatsApp client's side of Meta's encrypted endpoint, small and on its own:
//! wrap a fresh AES-128 key with RSA-OAEP (SHA-256) under the business public key,
//! encrypt the payload with AES-128-GCM and a 16-byte IV, sign the body with the app
//! secret, and open the answer (the same key, the IV's bytes inverted).
//!
//! RustCrypto, like the end-to-end tests' client, so the bench does not measure the
//! gateway with the gateway's own code.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes128;
use aes_gcm::{AesGcm, Nonce};
use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rsa::pkcs8::DecodePublicKey;
use rsa::rand_core::{OsRng, RngCore};
use rsa::{Oaep, RsaPublicKey};
use serde_json::Value;
use sha2::Sha256;

/// AES-128-GCM with Meta's 16-byte nonce.
type Aes128Gcm16 = AesGcm<Aes128, U16>;

/// Seals requests for one business public key and signs them with one app secret.
#[derive(Debug, Clone)]
pub struct Sealer {
    public_key: RsaPublicKey,
    app_secret: String,
}

/// A sealed request body, its `X-Hub-Signature-256`, and what opens its answer.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub body: Vec<u8>,
    pub signature: String,
    pub opener: Opener,
}

/// The AES key and IV of one request: what its answer is encrypted with.
#[derive(Debug, Clone)]
pub struct Opener {
    aes_key: [u8; 16],
    iv: [u8; 16],
}

impl Sealer {
    /// From a `BEGIN PUBLIC KEY` PEM (what `flowgate-gateway keygen` prints).
    pub fn new(public_pem: &str, app_secret: &str) -> anyhow::Result<Self> {
        Ok(Self {
            public_key: RsaPublicKey::from_public_key_pem(public_pem)
                .context("reading the business public key")?,
            app_secret: app_secret.to_owned(),
        })
    }

    /// Seals a JSON payload as WhatsApp does.
    pub fn seal(&self, payload: &Value) -> Sealed {
        let mut aes_key = [0u8; 16];
        let mut iv = [0u8; 16];
        OsRng.fill_bytes(&mut aes_key);
        OsRng.fill_bytes(&mut iv);
        let wrapped_key = self
            .public_key
            .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &aes_key)
            .expect("a 16-byte key fits any RSA-2048 OAEP block");
        let data = Aes128Gcm16::new(&aes_key.into())
            .encrypt(
                Nonce::<U16>::from_slice(&iv),
                payload.to_string().as_bytes(),
            )
            .expect("AES-GCM encryption of a short payload cannot fail");
        let body = serde_json::json!({
            "encrypted_flow_data": STANDARD.encode(data),
            "encrypted_aes_key": STANDARD.encode(wrapped_key),
            "initial_vector": STANDARD.encode(iv),
        })
        .to_string()
        .into_bytes();
        let signature = sign(&self.app_secret, &body);
        Sealed {
            body,
            signature,
            opener: Opener { aes_key, iv },
        }
    }
}

impl Opener {
    /// Opens an answer body: base64 of AES-128-GCM under the request's key with the
    /// IV's bytes inverted.
    pub fn open(&self, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let sealed = STANDARD
            .decode(body.trim_ascii())
            .context("the answer is not base64")?;
        let inverted = self.iv.map(|b| !b);
        Aes128Gcm16::new(&self.aes_key.into())
            .decrypt(Nonce::<U16>::from_slice(&inverted), sealed.as_slice())
            .map_err(|_| anyhow!("the answer does not authenticate"))
    }
}

/// `X-Hub-Signature-256` of `body` under `secret`.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
