//! Known-answer tests from public test vectors (`tests/data/whatsapp-flows-pywa.json`,
//! from the pywa project's test suite) and OpenSSL-made keys (`tests/data/keys/`).

use std::path::PathBuf;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flowgate_gateway::config::{MetaConfig, ModeConfig, Secret};
use flowgate_gateway::crypto::aead;
use flowgate_gateway::crypto::keys::{KeyError, PrivateKey};
use flowgate_gateway::crypto::signature::AppSecrets;
use flowgate_gateway::envelope::{Envelope, SIGNATURE_HEADER};
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(path)
}

fn vectors() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("whatsapp-flows-pywa.json")).unwrap())
        .unwrap()
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing"))
}

fn b64(value: &Value, pointer: &str) -> Vec<u8> {
    STANDARD.decode(text(value, pointer)).unwrap()
}

/// The vector's key is PKCS#8 encrypted with PBES2 (PBKDF2-HMAC-SHA256, DES-EDE3-CBC).
fn vector_key(v: &Value) -> PrivateKey {
    let pem = text(v, "/flow_request/private_key_pem");
    let password = text(v, "/flow_request/private_key_password");
    PrivateKey::from_pem(pem, Some(password.as_bytes())).unwrap()
}

#[test]
fn decrypts_the_public_request_vector() {
    let v = vectors();
    let envelope = Envelope::Meta(std::sync::Arc::new(flowgate_gateway::envelope::Meta::new(
        vec![vector_key(&v)],
        None,
    )));
    let body = serde_json::to_vec(&v["flow_request"]["request_body"]).unwrap();
    let opened = envelope.open(&HeaderMap::new(), Bytes::from(body)).unwrap();
    let payload: Value = serde_json::from_slice(&opened.payload).unwrap();
    assert_eq!(payload, v["flow_request"]["decrypted_request"]);
}

#[test]
fn encrypts_the_public_response_vector() {
    let v = vectors();
    let key = vector_key(&v);
    let aes_key = key
        .decrypt(&b64(&v, "/flow_request/request_body/encrypted_aes_key"))
        .unwrap();
    assert_eq!(aes_key.len(), 16);
    let iv = b64(&v, "/flow_request/request_body/initial_vector");
    let flipped: [u8; 16] = std::array::from_fn(|i| iv[i] ^ 0xff);
    let plaintext = text(&v, "/flow_request/response_plaintext_utf8");
    let sealed = aead::Key::new(&aes_key)
        .unwrap()
        .seal(&flipped, &[], plaintext.as_bytes())
        .unwrap();
    assert_eq!(
        STANDARD.encode(&sealed),
        text(&v, "/flow_request/response_body_expected")
    );

    // The gateway's own sealer gives an answer that opens to the same JSON value.
    let envelope = Envelope::Meta(std::sync::Arc::new(flowgate_gateway::envelope::Meta::new(
        vec![key],
        None,
    )));
    let body = serde_json::to_vec(&v["flow_request"]["request_body"]).unwrap();
    let opened = envelope.open(&HeaderMap::new(), Bytes::from(body)).unwrap();
    let answer: Value = serde_json::from_str(plaintext).unwrap();
    let response = opened.sealer.seal(StatusCode::OK, &answer);
    let bytes = futures_body(response);
    let decrypted = aead::Key::new(&aes_key)
        .unwrap()
        .open(&flipped, &[], &STANDARD.decode(bytes).unwrap())
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&decrypted).unwrap(), answer);
}

fn futures_body(response: axum::response::Response) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    })
}

#[test]
fn checks_the_public_signature_vector() {
    let v = vectors();
    let secret = text(&v, "/signature/app_secret");
    let header = text(&v, "/signature/x_hub_signature_256");
    let body = b64(&v, "/signature/raw_body_base64");
    let secrets = AppSecrets::new(&[secret]);
    assert!(secrets.verify_body(Some(header.as_bytes()), &body));
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert!(!secrets.verify_body(Some(header.as_bytes()), &tampered));
    assert!(!AppSecrets::new(&["another secret"]).verify_body(Some(header.as_bytes()), &body));

    // Through the envelope: the signature is checked over the raw bytes before anything else.
    let envelope = Envelope::Meta(std::sync::Arc::new(flowgate_gateway::envelope::Meta::new(
        vec![],
        Some(AppSecrets::new(&[secret])),
    )));
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(header).unwrap());
    // Signed correctly but not an encrypted request: past the signature, refused as undecryptable.
    let err = envelope
        .open(&headers, Bytes::from(body.clone()))
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 421);
    let err = envelope.open(&headers, Bytes::from(tampered)).unwrap_err();
    assert_eq!(err.status().as_u16(), 432);
}

#[test]
fn loads_openssl_keys_in_every_form() {
    let load = |file: &str, passphrase: Option<&str>| {
        Envelope::load(&ModeConfig::Meta(MetaConfig {
            private_keys: vec![data(&format!("keys/{file}"))],
            passphrase: passphrase.map(Secret::new),
            app_secrets: vec![],
        }))
    };
    for (file, passphrase) in [
        ("pkcs1.pem", None),
        ("pkcs8.pem", None),
        ("pkcs8-encrypted.pem", Some("flowgate-test")),
    ] {
        assert!(load(file, passphrase).is_ok(), "{file}");
    }
    let err = load("pkcs8-encrypted.pem", Some("wrong"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pkcs8-encrypted.pem") && err.contains("wrong passphrase"),
        "{err}"
    );
    assert!(!err.contains("wrong\""), "{err}");
    let err = load("pkcs8-encrypted.pem", None).unwrap_err().to_string();
    assert!(err.contains("no passphrase"), "{err}");
    let err = load("pkcs1.pub.pem", None).unwrap_err().to_string();
    assert!(err.contains("no PEM private key"), "{err}");
    let err = load("missing.pem", None).unwrap_err().to_string();
    assert!(
        err.contains("missing.pem") && err.contains("cannot read"),
        "{err}"
    );

    // The same key whatever the form: each decrypts what its public key sealed.
    let pem = |f: &str| std::fs::read_to_string(data(&format!("keys/{f}"))).unwrap();
    let public_pem = pem("pkcs1.pub.pem");
    let der = STANDARD
        .decode(
            public_pem
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&der).unwrap()).unwrap();
    let mut out = vec![0u8; public.ciphertext_size()];
    let sealed = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, b"sixteen byte key", &mut out, None)
        .unwrap()
        .to_vec();
    for (file, passphrase) in [
        ("pkcs1.pem", None),
        ("pkcs8.pem", None),
        ("pkcs8-encrypted.pem", Some(&b"flowgate-test"[..])),
    ] {
        let key = PrivateKey::from_pem(&pem(file), passphrase).unwrap();
        assert_eq!(
            key.decrypt(&sealed).as_deref(),
            Some(&b"sixteen byte key"[..]),
            "{file}"
        );
    }
    let other = PrivateKey::from_pem(&pem("rotated.pem"), None).unwrap();
    assert_eq!(other.decrypt(&sealed), None);
    assert_eq!(PrivateKey::from_pem("", None).unwrap_err(), KeyError::NoPem);
}
