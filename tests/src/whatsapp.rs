//! The WhatsApp client's side of Meta's encrypted endpoint, written independently of
//! the gateway (RustCrypto's `rsa`, `aes-gcm`, `hmac`, `sha2`; the gateway uses
//! aws-lc-rs): seal a request with the business public key, sign it with the app
//! secret, open the answer.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes128;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rsa::pkcs8::DecodePublicKey;
use rsa::rand_core::{OsRng, RngCore};
use rsa::{Oaep, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;

/// AES-128-GCM with Meta's 16-byte nonce.
type Aes128Gcm16 = AesGcm<Aes128, U16>;

/// A client holding the business public key.
#[derive(Debug, Clone)]
pub struct Client {
    public_key: RsaPublicKey,
}

/// A sealed request and what opens its answer.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub body: Vec<u8>,
    pub aes_key: [u8; 16],
    pub iv: [u8; 16],
}

impl Client {
    /// From a `BEGIN PUBLIC KEY` PEM.
    pub fn new(public_pem: &str) -> Self {
        Self {
            public_key: RsaPublicKey::from_public_key_pem(public_pem).expect("public key PEM"),
        }
    }

    /// Seals a JSON payload as WhatsApp does.
    pub fn seal(&self, payload: &Value) -> Sealed {
        let mut aes_key = [0u8; 16];
        let mut iv = [0u8; 16];
        OsRng.fill_bytes(&mut aes_key);
        OsRng.fill_bytes(&mut iv);
        let encrypted_key = self
            .public_key
            .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &aes_key)
            .expect("OAEP");
        let cipher = Aes128Gcm16::new_from_slice(&aes_key).unwrap();
        let data = cipher
            .encrypt(
                Nonce::<U16>::from_slice(&iv),
                payload.to_string().as_bytes(),
            )
            .unwrap();
        let body = json!({
            "encrypted_flow_data": STANDARD.encode(data),
            "encrypted_aes_key": STANDARD.encode(encrypted_key),
            "initial_vector": STANDARD.encode(iv),
        });
        Sealed {
            body: body.to_string().into_bytes(),
            aes_key,
            iv,
        }
    }
}

impl Sealed {
    /// Opens an answer body: base64 of AES-128-GCM under the request's key with the
    /// IV's bytes inverted. Panics when it does not open: a wrong answer.
    pub fn open(&self, body: &str) -> Value {
        let bytes = self.open_bytes(body);
        serde_json::from_slice(&bytes).expect("the decrypted answer is JSON")
    }

    /// The decrypted bytes of an answer.
    pub fn open_bytes(&self, body: &str) -> Vec<u8> {
        let sealed = STANDARD.decode(body.trim()).expect("the answer is base64");
        let flipped = self.iv.map(|b| !b);
        let cipher = Aes128Gcm16::new_from_slice(&self.aes_key).unwrap();
        cipher
            .decrypt(Nonce::<U16>::from_slice(&flipped), sealed.as_slice())
            .expect("the answer authenticates")
    }

    /// The body's JSON fields, to build altered bodies.
    pub fn fields(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// `X-Hub-Signature-256` of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex_lower(&mac.finalize().into_bytes()))
}

/// A `flow_token_signature`: a JWT signed with HS256 under `secret`.
pub fn token_jwt(secret: &str, claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
