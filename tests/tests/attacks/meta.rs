//! Meta mode attacked: forged signatures over large bodies, an AES key of the wrong
//! size, a `flow_token_signature` lifted from another flow token. The client side is
//! `flowgate_e2e::whatsapp` (RustCrypto, written independently of the gateway).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flowgate_e2e::spawned::{FlowService, Gateway, GatewayOptions, key_file, metric_value};
use flowgate_e2e::whatsapp::{Client, Sealed, sign, token_jwt};
use flowgate_e2e::{Alpn, Probe, Service, whatsapp};
use rsa::pkcs8::DecodePublicKey;
use rsa::rand_core::OsRng;
use rsa::{Oaep, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;

use super::code;

const SECRET: &str = "app-secret-for-attacks";

fn public_pem() -> String {
    std::fs::read_to_string(key_file("pkcs1.pub.pem")).unwrap()
}

/// POSTs `body` with `signature` to `path`: the status and the answer, opened with
/// `sealed` when the gateway sealed it, else the plain JSON error.
async fn post(
    gateway: &Gateway,
    client: &reqwest::Client,
    path: &str,
    body: Vec<u8>,
    signature: &str,
    sealed: Option<&Sealed>,
) -> (u16, Value) {
    let response = client
        .post(gateway.url(path))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("the request reaches the gateway");
    let status = response.status().as_u16();
    let plain = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "text/plain");
    let text = response.text().await.unwrap();
    match (plain, sealed) {
        (true, Some(sealed)) => (status, sealed.open(&text)),
        _ => (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text}")),
        ),
    }
}

/// A real, correctly signed and sealed request: the status and the opened answer.
async fn real(
    gateway: &Gateway,
    client: &reqwest::Client,
    path: &str,
    payload: &Value,
) -> (u16, Value) {
    let sealed = Client::new(&public_pem()).seal(payload);
    let signature = sign(SECRET, &sealed.body);
    post(
        gateway,
        client,
        path,
        sealed.body.clone(),
        &signature,
        Some(&sealed),
    )
    .await
}

/// Eight clients send large bodies (512 KiB) under a forged signature as fast as
/// they can, against an in-flight limit of 1: each is 432, none is decrypted, none
/// takes the slot, and real encrypted requests are served during the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_signatures_holds_no_slot() {
    let service = FlowService::start().await;
    let gateway = Arc::new(
        Gateway::start(
            &service.url(),
            GatewayOptions::default()
                .meta(SECRET)
                .env("FLOWGATE_MAX_IN_FLIGHT", "1"),
        )
        .await,
    );
    let forged = json!({
        "encrypted_flow_data": STANDARD.encode(vec![7u8; 384 * 1024]),
        "encrypted_aes_key": STANDARD.encode([1u8; 256]),
        "initial_vector": STANDARD.encode([2u8; 16]),
    })
    .to_string()
    .into_bytes();
    assert!(forged.len() > 512 * 1024);
    let forged_signature = sign("not-the-app-secret", &forged);

    let (stop, refused) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut flood = Vec::new();
    for _ in 0..8 {
        let (gateway, stop, refused) = (gateway.clone(), stop.clone(), refused.clone());
        let (forged, signature) = (forged.clone(), forged_signature.clone());
        flood.push(tokio::spawn(async move {
            let client = gateway.client(Alpn::Both);
            while !stop.load(Ordering::SeqCst) {
                let (status, body) = post(
                    &gateway,
                    &client,
                    "/flow-endpoint",
                    forged.clone(),
                    &signature,
                    None,
                )
                .await;
                assert_eq!((status, code(&body)), (432, "invalid_signature"), "{body}");
                refused.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // A flood task that ended early has failed its own check: await it to see why.
    let started = std::time::Instant::now();
    while refused.load(Ordering::SeqCst) < 16 {
        if let Some(ended) = flood.iter().position(|task| task.is_finished()) {
            flood
                .swap_remove(ended)
                .await
                .expect("every forged request got 432");
            panic!("a flood task ended before it was stopped");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "16 forged requests were not refused within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let client = gateway.client(Alpn::Both);
    for _ in 0..5 {
        let (status, answer) = real(
            &gateway,
            &client,
            "/flow-endpoint",
            &whatsapp("INIT", "real-user", "", json!({})),
        )
        .await;
        assert_eq!(
            (status, answer["screen"].as_str()),
            (200, Some("WELCOME_SCREEN")),
            "{answer}"
        );
    }
    assert!(
        !flood.iter().any(|task| task.is_finished()),
        "the flood ended before the real requests did"
    );
    stop.store(true, Ordering::SeqCst);
    for task in flood {
        task.await.expect("every forged request got 432");
    }

    let metrics = gateway.metrics().await;
    let forged_count = refused.load(Ordering::SeqCst) as f64;
    assert_eq!(
        metric_value(&metrics, "flowgate_signature_failures_total"),
        forged_count
    );
    assert_eq!(
        metric_value(&metrics, "flowgate_decrypt_failures_total"),
        0.0
    );
    assert_eq!(metric_value(&metrics, "flowgate_shed_total"), 0.0);
}

/// An AES-256 key, properly wrapped with the business public key, is refused as
/// undecryptable (421): the protocol is AES-128. A real request is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_byte_aes_key_gets_421() {
    let service = FlowService::start().await;
    let gateway = Gateway::start(&service.url(), GatewayOptions::default().meta(SECRET)).await;
    let public_key = RsaPublicKey::from_public_key_pem(&public_pem()).unwrap();
    let (aes_key, iv) = ([0x42u8; 32], [0x24u8; 16]);
    let payload = whatsapp("INIT", "attacker", "", json!({}));
    let data = AesGcm::<Aes256, U16>::new_from_slice(&aes_key)
        .unwrap()
        .encrypt(
            Nonce::<U16>::from_slice(&iv),
            payload.to_string().as_bytes(),
        )
        .unwrap();
    let encrypted_key = public_key
        .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &aes_key)
        .unwrap();
    let body = json!({
        "encrypted_flow_data": STANDARD.encode(data),
        "encrypted_aes_key": STANDARD.encode(encrypted_key),
        "initial_vector": STANDARD.encode(iv),
    })
    .to_string()
    .into_bytes();
    let client = gateway.client(Alpn::Both);
    let signature = sign(SECRET, &body);
    let attack = post(&gateway, &client, "/flow-endpoint", body, &signature, None);
    let init = whatsapp("INIT", "real-user", "", json!({}));
    let ((status, refused), (real_status, answer)) =
        tokio::join!(attack, real(&gateway, &client, "/flow-endpoint", &init));
    assert_eq!(
        (status, code(&refused)),
        (421, "cannot_decrypt"),
        "{refused}"
    );
    assert_eq!(
        (real_status, answer["screen"].as_str()),
        (200, Some("WELCOME_SCREEN")),
        "{answer}"
    );
    assert_eq!(gateway.metric("flowgate_decrypt_failures_total").await, 1.0);
}

/// A `flow_token_signature` signed with the app secret but issued for another flow
/// token reaches the flow as INVALID; one for the request's own token as VALID. The
/// reference flows do not show the verdict, so the flow service behind the spawned
/// gateway here is the e2e crate's `Probe` (in process), which echoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signature_for_another_token_is_invalid() {
    let service = Service::start(Probe::default()).await;
    let gateway = Gateway::start(&service.url(), GatewayOptions::default().meta(SECRET)).await;
    let client = gateway.client(Alpn::Both);
    let cases = [
        ("someone-elses-token", "FLOW_TOKEN_SIGNATURE_INVALID"),
        ("real-user", "FLOW_TOKEN_SIGNATURE_VALID"),
    ];
    for (claimed, verdict) in cases {
        // Distinct data: a repeated request would get the first one's stored outcome.
        let mut request = whatsapp("INIT", "real-user", "", json!({"case": claimed}));
        request["flow_token_signature"] = json!(token_jwt(SECRET, &json!({"flow_token": claimed})));
        let (status, answer) = real(&gateway, &client, "/flows/probe", &request).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"]["flow_token_signature"], verdict, "{claimed}");
        assert_eq!(answer["data"]["flow_token"], "real-user");
    }
}
