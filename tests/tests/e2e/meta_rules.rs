//! Rules of Meta mode beyond the wire format, end to end through a real gateway and
//! flow service: a `flow_token_signature` binds to its flow token, and the AES key
//! must be AES-128's 16 bytes. The client side is `flowgate_e2e::whatsapp` (RustCrypto),
//! or built here from the same crates where a request must break the protocol.

use std::path::PathBuf;

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flowgate_e2e::whatsapp::{Client, Sealed, token_jwt};
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use flowgate_gateway::config::{MetaConfig, ModeConfig, Secret};
use flowgate_gateway::envelope::Envelope;
use rsa::pkcs8::DecodePublicKey;
use rsa::rand_core::OsRng;
use rsa::{Oaep, RsaPublicKey};
use serde_json::json;
use sha2::Sha256;

const SECRET: &str = "app-secret-1";

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/keys")
        .join(name)
}

fn public_pem() -> String {
    std::fs::read_to_string(key_file("pkcs1.pub.pem")).unwrap()
}

async fn stack() -> (Service, Gateway) {
    let service = Service::start(Probe::default()).await;
    let mut options = GatewayOptions::new(service.url());
    options.envelope = Envelope::load(&ModeConfig::Meta(MetaConfig {
        private_keys: vec![key_file("pkcs1.pem")],
        passphrase: None,
        app_secrets: vec![Secret::new(SECRET)],
    }))
    .expect("keys load");
    (service, Gateway::start(options).await)
}

/// A JWT signed with the app secret is VALID only for the flow token its claims name.
#[tokio::test]
async fn a_token_signature_for_another_token_is_invalid() {
    let (_service, gateway) = stack().await;
    let client = Client::new(&public_pem());
    let cases = [
        (json!({"flow_token": "tok"}), "FLOW_TOKEN_SIGNATURE_VALID"),
        (
            json!({"flow_token": "someone-elses-token"}),
            "FLOW_TOKEN_SIGNATURE_INVALID",
        ),
        (json!({"flow_token": 7}), "FLOW_TOKEN_SIGNATURE_INVALID"),
        (json!({"sub": "tok"}), "FLOW_TOKEN_SIGNATURE_VALID"),
    ];
    for (i, (claims, expected)) in cases.into_iter().enumerate() {
        let mut request = whatsapp("INIT", "tok", "", json!({"case": i}));
        request["flow_token_signature"] = json!(token_jwt(SECRET, &claims));
        let (status, body) = gateway
            .post_sealed("/flows/probe", &client.seal(&request), Some(SECRET))
            .await;
        assert_eq!(status, 200, "{claims}: {body}");
        assert_eq!(body["data"]["flow_token_signature"], expected, "{claims}");
    }
}

/// A request sealed with AES-256-GCM under a 32-byte key, the key properly wrapped
/// with the business public key, is refused as undecryptable: the protocol is AES-128.
#[tokio::test]
async fn a_32_byte_aes_key_gets_421() {
    let (_service, gateway) = stack().await;
    let public_key = RsaPublicKey::from_public_key_pem(&public_pem()).unwrap();
    let (aes_key, iv) = ([0x42u8; 32], [0x24u8; 16]);
    let data = AesGcm::<Aes256, U16>::new_from_slice(&aes_key)
        .unwrap()
        .encrypt(
            Nonce::<U16>::from_slice(&iv),
            json!({"action": "ping"}).to_string().as_bytes(),
        )
        .unwrap();
    let encrypted_key = public_key
        .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &aes_key)
        .unwrap();
    let sealed = Sealed {
        body: json!({
            "encrypted_flow_data": STANDARD.encode(data),
            "encrypted_aes_key": STANDARD.encode(encrypted_key),
            "initial_vector": STANDARD.encode(iv),
        })
        .to_string()
        .into_bytes(),
        // Not used: a 421 answer is plain JSON, never sealed.
        aes_key: [0; 16],
        iv,
    };
    let (status, body) = gateway
        .post_sealed("/flow-endpoint", &sealed, Some(SECRET))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (421, Some("cannot_decrypt")),
        "{body}"
    );

    // The same request with a 16-byte key is served.
    let good = Client::new(&public_pem()).seal(&json!({"action": "ping"}));
    assert_eq!(
        gateway
            .post_sealed("/flow-endpoint", &good, Some(SECRET))
            .await,
        (200, json!({"data": {"status": "active"}}))
    );
}
