//! Meta's encrypted endpoint end to end. The test plays WhatsApp with its own
//! client-side implementation of the cryptography (`flowgate_e2e::whatsapp`, on
//! RustCrypto): it seals with the public key, signs with the app secret, and opens
//! the gateway's answers.

use std::path::PathBuf;

use flowgate_e2e::whatsapp::{Client, Sealed, sign, token_jwt};
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use flowgate_gateway::config::{MetaConfig, ModeConfig, Secret};
use flowgate_gateway::envelope::Envelope;
use serde_json::{Value, json};

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/keys")
        .join(name)
}

fn client(public: &str) -> Client {
    Client::new(&std::fs::read_to_string(key_file(public)).unwrap())
}

/// A flow service and a gateway in meta mode with the given key files and app secrets.
async fn stack(
    keys: &[&str],
    passphrase: Option<&str>,
    secrets: &[&str],
) -> (Service, Gateway, Probe) {
    let probe = Probe::default();
    let service = Service::start(probe.clone()).await;
    let mut options = GatewayOptions::new(service.url());
    options.envelope = Envelope::load(&ModeConfig::Meta(MetaConfig {
        private_keys: keys.iter().map(|k| key_file(k)).collect(),
        passphrase: passphrase.map(Secret::new),
        app_secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
    }))
    .expect("keys load");
    let gateway = Gateway::start(options).await;
    (service, gateway, probe)
}

const SECRET: &str = "app-secret-1";

#[tokio::test]
async fn signup_journey_encrypted_and_signed() {
    let (_service, gateway, _) =
        stack(&["pkcs8-encrypted.pem"], Some("flowgate-test"), &[SECRET]).await;
    let whatsapp_client = client("pkcs1.pub.pem");
    let welcome = "Welcome! Enter your email address to sign up.";
    let steps = [
        (
            json!({"version": "3.0", "action": "ping"}),
            json!({"data": {"status": "active"}}),
        ),
        (
            whatsapp("INIT", "tok", "", json!({})),
            json!({"screen": "WELCOME_SCREEN", "data": {"welcome_message": welcome}}),
        ),
        (
            whatsapp(
                "data_exchange",
                "tok",
                "WELCOME_SCREEN",
                json!({"email": "nope"}),
            ),
            json!({"screen": "WELCOME_SCREEN", "data": {
                "welcome_message": welcome, "error_message": "Please enter a valid email address."}}),
        ),
        (
            whatsapp(
                "data_exchange",
                "tok",
                "WELCOME_SCREEN",
                json!({"email": "ada@example.com"}),
            ),
            json!({"screen": "CONFIRMATION_SCREEN", "data": {"user_email": "ada@example.com"}}),
        ),
        (
            whatsapp("BACK", "tok", "CONFIRMATION_SCREEN", json!({})),
            json!({"screen": "WELCOME_SCREEN", "data": {"welcome_message": welcome}}),
        ),
        (
            whatsapp(
                "data_exchange",
                "tok",
                "CONFIRMATION_SCREEN",
                json!({"email": "ada@example.com"}),
            ),
            json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": {
                "flow_token": "tok", "email": "ada@example.com"}}}}),
        ),
        (
            whatsapp(
                "data_exchange",
                "tok",
                "X",
                json!({"error": "invalid-screen-transition", "error_message": "no"}),
            ),
            json!({"data": {"acknowledged": true}}),
        ),
    ];
    for (request, expected) in steps {
        let sealed = whatsapp_client.seal(&request);
        assert_eq!(
            gateway
                .post_sealed("/flow-endpoint", &sealed, Some(SECRET))
                .await,
            (200, expected),
            "{request}"
        );
    }
}

#[tokio::test]
async fn every_answer_after_decryption_is_encrypted() {
    let (_service, gateway, _) = stack(&["pkcs8.pem"], None, &[SECRET]).await;
    let c = client("pkcs1.pub.pem");
    let cases = [
        (
            whatsapp("data_exchange", "tok", "EXPIRED", json!({})),
            427,
            json!({"error_msg": "This sign-up link has expired."}),
        ),
        (
            json!({"version": "3.0", "action": "INIT"}),
            400,
            json!({"error": {"code": "missing_flow_token", "message": "`flow_token` is missing or empty"}}),
        ),
        (
            whatsapp("data_exchange", "tok", "FAIL", json!({})),
            503,
            json!({"error": {"code": "service_unavailable", "message": "the flow service is unavailable"}}),
        ),
    ];
    for (request, status, expected) in cases {
        let sealed = c.seal(&request);
        // `post_sealed` opens text/plain answers (and panics on one that does not open),
        // and panics on a plain JSON error a decrypted request should not get.
        assert_eq!(
            gateway
                .post_sealed("/flows/probe", &sealed, Some(SECRET))
                .await,
            (status, expected),
            "{request}"
        );
    }
    // The raw answer is base64 text, not a JSON string.
    let sealed = c.seal(&json!({"version": "3.0", "action": "ping"}));
    let response = gateway
        .client
        .post(format!("{}/flow-endpoint", gateway.base))
        .header("x-hub-signature-256", sign(SECRET, &sealed.body))
        .body(sealed.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/plain");
    let text = response.text().await.unwrap();
    assert!(!text.starts_with('"') && !text.starts_with('{'), "{text}");
    assert_eq!(sealed.open_bytes(&text), br#"{"data":{"status":"active"}}"#);
}

fn altered(sealed: &Sealed, field: &str, value: Value) -> Sealed {
    let mut fields = sealed.fields();
    fields[field] = value;
    Sealed {
        body: fields.to_string().into_bytes(),
        ..sealed.clone()
    }
}

#[tokio::test]
async fn undecryptable_requests_get_421() {
    let (_service, gateway, _) = stack(&["pkcs1.pem"], None, &[]).await;
    let good = client("pkcs1.pub.pem").seal(&json!({"action": "ping"}));
    assert_eq!(
        gateway.post_sealed("/flow-endpoint", &good, None).await.0,
        200
    );

    let wrong_key = client("rotated.pub.pem").seal(&json!({"action": "ping"}));
    let mut data = base64_field(&good, "encrypted_flow_data");
    data[3] ^= 0x40;
    let tampered = altered(&good, "encrypted_flow_data", json!(b64(&data)));
    let mut tag = base64_field(&good, "encrypted_flow_data");
    let last = tag.len() - 1;
    tag[last] ^= 1;
    let tampered_tag = altered(&good, "encrypted_flow_data", json!(b64(&tag)));
    let mut key = base64_field(&good, "encrypted_aes_key");
    key[0] ^= 1;
    let tampered_key = altered(&good, "encrypted_aes_key", json!(b64(&key)));
    let cases = [
        ("wrong key", wrong_key),
        ("tampered ciphertext", tampered),
        ("tampered tag", tampered_tag),
        ("tampered AES key", tampered_key),
        (
            "garbage base64",
            altered(&good, "encrypted_flow_data", json!("%%% not base64 %%%")),
        ),
        (
            "garbage key base64",
            altered(&good, "encrypted_aes_key", json!("***")),
        ),
        (
            "short IV",
            altered(&good, "initial_vector", json!("AAAAAAAAAAAAAAAA")),
        ),
        (
            "IV not a string",
            altered(&good, "initial_vector", json!(16)),
        ),
        (
            "missing field",
            altered(&good, "encrypted_aes_key", Value::Null),
        ),
        (
            "not JSON",
            Sealed {
                body: b"hello".to_vec(),
                ..good.clone()
            },
        ),
    ];
    for (name, sealed) in cases {
        let (status, body) = gateway.post_sealed("/flow-endpoint", &sealed, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (421, Some("cannot_decrypt")),
            "{name}: {body}"
        );
    }
}

fn base64_field(sealed: &Sealed, field: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(sealed.fields()[field].as_str().unwrap())
        .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn bad_signatures_get_432() {
    let (_service, gateway, _) = stack(&["pkcs1.pem"], None, &["old-secret", "new-secret"]).await;
    let c = client("pkcs1.pub.pem");
    let ping = json!({"action": "ping"});

    // Rotation: both secrets are accepted.
    for secret in ["old-secret", "new-secret"] {
        assert_eq!(
            gateway
                .post_sealed("/flow-endpoint", &c.seal(&ping), Some(secret))
                .await
                .0,
            200,
            "{secret}"
        );
    }
    let sealed = c.seal(&ping);
    let reserialised = serde_json::to_vec_pretty(&sealed.fields()).unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("unknown secret", Some(sign("another-secret", &sealed.body))),
        (
            "wrong algorithm prefix",
            Some(sign("new-secret", &sealed.body).replace("sha256=", "sha1=")),
        ),
        ("not hex", Some("sha256=not-hex".into())),
        ("empty", Some(String::new())),
        (
            "over a re-serialised body",
            Some(sign("new-secret", &reserialised)),
        ),
    ];
    for (name, signature) in cases {
        let (status, body) = gateway
            .post_signed("/flow-endpoint", &sealed, signature.as_deref())
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (432, Some("invalid_signature")),
            "{name}: {body}"
        );
    }
    // The signature is checked before decryption: a wrong signature on garbage is 432, not 421.
    let garbage = Sealed {
        body: b"garbage".to_vec(),
        ..sealed.clone()
    };
    assert_eq!(
        gateway
            .post_signed("/flow-endpoint", &garbage, None)
            .await
            .0,
        432
    );
}

#[tokio::test]
async fn key_rotation_accepts_either_key() {
    let (_service, gateway, _) = stack(&["rotated.pem", "pkcs1.pem"], None, &[]).await;
    for public in ["rotated.pub.pem", "pkcs1.pub.pem"] {
        let sealed = client(public).seal(&json!({"action": "ping"}));
        assert_eq!(
            gateway.post_sealed("/flow-endpoint", &sealed, None).await,
            (200, json!({"data": {"status": "active"}}))
        );
    }
}

#[tokio::test]
async fn every_key_form_serves() {
    for (file, passphrase) in [
        ("pkcs1.pem", None),
        ("pkcs8.pem", None),
        ("pkcs8-encrypted.pem", Some("flowgate-test")),
    ] {
        let (_service, gateway, _) = stack(&[file], passphrase, &[]).await;
        let sealed = client("pkcs1.pub.pem").seal(&whatsapp("INIT", "tok", "", json!({})));
        let (status, body) = gateway.post_sealed("/flow-endpoint", &sealed, None).await;
        assert_eq!(
            (status, body["screen"].as_str()),
            (200, Some("WELCOME_SCREEN")),
            "{file}"
        );
    }
}

#[tokio::test]
async fn verification_results_reach_the_flow() {
    let c = client("pkcs1.pub.pem");
    let claims = json!({"flow_token": "tok"});
    let mut with_jwt = whatsapp("INIT", "tok", "", json!({}));
    with_jwt["flow_token_signature"] = json!(token_jwt(SECRET, &claims));
    let mut forged_jwt = with_jwt.clone();
    forged_jwt["flow_token_signature"] = json!(token_jwt("not-the-secret", &claims));

    let (_service, gateway, _) = stack(&["pkcs1.pem"], None, &[SECRET]).await;
    let cases = [
        (
            whatsapp("INIT", "tok", "", json!({})),
            true,
            "FLOW_TOKEN_SIGNATURE_UNSPECIFIED",
        ),
        (with_jwt.clone(), true, "FLOW_TOKEN_SIGNATURE_VALID"),
        (forged_jwt, true, "FLOW_TOKEN_SIGNATURE_INVALID"),
    ];
    for (i, (mut request, signature_verified, token_signature)) in cases.into_iter().enumerate() {
        // Other data per case: the same request again would be the same call, answered
        // from the store with the first case's outcome.
        request["data"] = json!({"case": i});
        let (status, body) = gateway
            .post_sealed("/flows/probe", &c.seal(&request), Some(SECRET))
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            body["data"]["signature_verified"], signature_verified,
            "{request}"
        );
        assert_eq!(
            body["data"]["flow_token_signature"], token_signature,
            "{request}"
        );
    }

    // Without app secrets nothing is verified, and a token signature cannot be checked.
    let (_service, gateway, _) = stack(&["pkcs1.pem"], None, &[]).await;
    let (_, body) = gateway
        .post_sealed("/flows/probe", &c.seal(&with_jwt), None)
        .await;
    assert_eq!(body["data"]["signature_verified"], false);
    assert_eq!(
        body["data"]["flow_token_signature"],
        "FLOW_TOKEN_SIGNATURE_UNCHECKED"
    );
}
