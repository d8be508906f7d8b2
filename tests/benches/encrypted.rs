//! Benchmark of Meta's encrypted endpoint, measured against the bare RSA-OAEP
//! decryption rate on the same machine (the floor of CPU per encrypted request).
//!
//! `cargo bench -p flowgate-e2e --bench encrypted` prints three numbers:
//! 1. RSA-2048 OAEP-SHA256 decryptions per second on one core (aws-lc-rs);
//! 2. the gateway's whole per-request crypto and translation work on one core:
//!    signature check, RSA, AES-GCM open, parse, build the call, seal the answer;
//! 3. end to end over HTTPS (HTTP/2) against an in-process gateway and flow service:
//!    requests per second and the process's CPU time per request (gateway, flow
//!    service and the load generator together; requests are sealed beforehand).
//!
//! Set `BENCH_REQUESTS` (default 4000) and `BENCH_CONCURRENCY` (default 16).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use flowgate_e2e::whatsapp::{Client, Sealed, sign};
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use flowgate_gateway::config::{MetaConfig, ModeConfig, Secret};
use flowgate_gateway::crypto::keys::PrivateKey;
use flowgate_gateway::envelope::{Envelope, SIGNATURE_HEADER};
use flowgate_gateway::translate;
use serde_json::json;

const SECRET: &str = "bench-app-secret";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User plus system CPU time of this process (Linux `/proc`, in 1/100 s ticks).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0, utime field 11, stime field 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn main() {
    let requests = env_or("BENCH_REQUESTS", 4000);
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/keys");
    let client = Client::new(&std::fs::read_to_string(keys.join("pkcs1.pub.pem")).unwrap());
    let payload = whatsapp(
        "data_exchange",
        "bench-token",
        "WELCOME_SCREEN",
        json!({"email": "ada@example.com"}),
    );
    eprintln!("sealing {requests} requests…");
    let sealed: Vec<Sealed> = (0..requests).map(|_| client.seal(&payload)).collect();
    let signatures: Vec<String> = sealed.iter().map(|s| sign(SECRET, &s.body)).collect();

    // 1. Bare RSA decryption.
    let key = PrivateKey::from_pem(
        &std::fs::read_to_string(keys.join("pkcs8.pem")).unwrap(),
        None,
    )
    .unwrap();
    let encrypted_keys: Vec<Vec<u8>> = sealed
        .iter()
        .map(|s| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(s.fields()["encrypted_aes_key"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    for encrypted in &encrypted_keys {
        assert!(key.decrypt(encrypted).is_some());
    }
    let rsa = started.elapsed() / requests as u32;

    // 2. Everything the gateway does per request, on one core.
    let envelope = Envelope::load(&ModeConfig::Meta(MetaConfig {
        private_keys: vec![keys.join("pkcs8.pem")],
        passphrase: None,
        app_secrets: vec![Secret::new(SECRET)],
    }))
    .unwrap();
    let answer =
        json!({"screen": "CONFIRMATION_SCREEN", "data": {"user_email": "ada@example.com"}});
    let started = Instant::now();
    for (s, signature) in sealed.iter().zip(&signatures) {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        let opened = envelope
            .open(&headers, Bytes::from(s.body.clone()))
            .unwrap();
        let inbound = translate::parse(&opened.payload).unwrap();
        let call = translate::to_call(inbound, Default::default()).unwrap();
        assert!(call.is_some());
        let response = opened.sealer.seal(StatusCode::OK, &answer);
        assert_eq!(response.status(), StatusCode::OK);
    }
    let pipeline = started.elapsed() / requests as u32;

    // 3. End to end over HTTPS.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rate, cpu_per_request, failures) = runtime.block_on(async {
        let service = Service::start(Probe::default()).await;
        let mut options = GatewayOptions::new(service.url());
        options.envelope = envelope.clone();
        let gateway = std::sync::Arc::new(Gateway::start(options).await);
        let work = std::sync::Arc::new(std::sync::Mutex::new(
            sealed.into_iter().zip(signatures).collect::<Vec<_>>(),
        ));
        // Warm the connection and the flow service.
        let (first, first_sig) = work.lock().unwrap().pop().unwrap();
        let warm = gateway
            .post_signed("/flow-endpoint", &first, Some(&first_sig))
            .await;
        assert_eq!(warm.0, 200, "{warm:?}");
        let total = work.lock().unwrap().len();
        let cpu_before = process_cpu();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (gateway, work) = (gateway.clone(), work.clone());
            tasks.push(tokio::spawn(async move {
                let mut failures = 0;
                loop {
                    let Some((sealed, signature)) = work.lock().unwrap().pop() else {
                        break;
                    };
                    let (status, body) = gateway
                        .post_signed("/flow-endpoint", &sealed, Some(&signature))
                        .await;
                    if status != 200 || body["screen"] != "CONFIRMATION_SCREEN" {
                        failures += 1;
                    }
                }
                failures
            }));
        }
        let mut failures = 0;
        for task in tasks {
            failures += task.await.unwrap();
        }
        let elapsed = started.elapsed();
        let cpu = process_cpu().saturating_sub(cpu_before);
        (
            total as f64 / elapsed.as_secs_f64(),
            cpu / total as u32,
            failures,
        )
    });

    let per_second = |d: Duration| 1.0 / d.as_secs_f64();
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "RSA-2048 OAEP-SHA256 decrypt (1 core):     {:>8.0}/s  {:>7.1} µs",
        per_second(rsa),
        rsa.as_secs_f64() * 1e6
    );
    println!(
        "gateway per-request work (1 core):         {:>8.0}/s  {:>7.1} µs  ({:.2}× the RSA floor)",
        per_second(pipeline),
        pipeline.as_secs_f64() * 1e6,
        pipeline.as_secs_f64() / rsa.as_secs_f64()
    );
    println!(
        "end to end, HTTPS h2, {concurrency} concurrent:         {rate:>8.0}/s  {:>7.1} µs CPU/request (whole process)",
        cpu_per_request.as_secs_f64() * 1e6
    );
    println!("failed requests: {failures}");
    assert_eq!(failures, 0);
}
