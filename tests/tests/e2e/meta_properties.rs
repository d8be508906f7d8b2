//! Property tests of the encrypted endpoint through a real gateway: random screen
//! data survives the round trip exactly, and random mutations of a sealed request
//! never get a 200 and never take the gateway down.

use std::path::PathBuf;

use flowgate_e2e::whatsapp::{Client, Sealed};
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use flowgate_gateway::config::{MetaConfig, ModeConfig};
use flowgate_gateway::envelope::Envelope;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

struct Stack {
    runtime: tokio::runtime::Runtime,
    _service: Service,
    gateway: Gateway,
    client: Client,
}

fn stack() -> Stack {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let keys = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/keys");
    let (service, gateway) = runtime.block_on(async {
        let service = Service::start(Probe::default()).await;
        let mut options = GatewayOptions::new(service.url());
        options.envelope = Envelope::load(&ModeConfig::Meta(MetaConfig {
            private_keys: vec![keys.join("pkcs8.pem")],
            passphrase: None,
            app_secrets: vec![],
        }))
        .unwrap();
        (service, Gateway::start(options).await)
    });
    let client = Client::new(&std::fs::read_to_string(keys.join("pkcs1.pub.pem")).unwrap());
    Stack {
        runtime,
        _service: service,
        gateway,
        client,
    }
}

/// JSON values that a Struct carries exactly: integers within ±2^53, fractions that are
/// not integral (an integral double comes back as an integer), strings, nesting.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|n| json!(n)),
        (-1e12f64..1e12)
            .prop_filter("not integral", |x| x.fract() != 0.0)
            .prop_map(|x| json!(x)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn screen_data() -> impl Strategy<Value = Map<String, Value>> {
    // `error` and `error_key` at the top level would make the request an error notification.
    prop::collection::btree_map("[a-z_]{1,10}", json_value(), 0..6).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| k != "error" && k != "error_key")
            .collect()
    })
}

#[test]
fn random_payloads_round_trip() {
    let s = stack();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    runner
        .run(&screen_data(), |data| {
            let request = whatsapp("data_exchange", "tok", "ECHO", Value::Object(data.clone()));
            let sealed = s.client.seal(&request);
            let (status, answer) =
                s.runtime
                    .block_on(s.gateway.post_sealed("/flows/probe", &sealed, None));
            prop_assert_eq!(status, 200);
            prop_assert_eq!(answer, json!({"screen": "ECHO", "data": data}));
            Ok(())
        })
        .unwrap();
}

/// One change to the raw body: flip a bit, delete a byte, or insert one.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Insert(prop::sample::Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, 1 << bit)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn apply(body: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut body = body.to_vec();
    match mutation {
        Mutation::Flip(i, mask) => {
            let i = i.index(body.len());
            body[i] ^= mask;
        }
        Mutation::Delete(i) => {
            body.remove(i.index(body.len()));
        }
        Mutation::Insert(i, byte) => body.insert(i.index(body.len() + 1), *byte),
    }
    body
}

#[test]
fn mutated_requests_never_succeed() {
    let s = stack();
    let sealed = s.client.seal(&whatsapp("INIT", "tok", "", json!({"n": 1})));
    assert_eq!(
        s.runtime
            .block_on(s.gateway.post_sealed("/flow-endpoint", &sealed, None))
            .0,
        200
    );

    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(&mutation(), |mutation| {
            let body = apply(&sealed.body, &mutation);
            // A mutation that leaves the bytes equal is not a mutation (an inserted byte
            // cannot do that, a flip or deletion always changes them).
            prop_assume!(body != sealed.body);
            let mutated = Sealed {
                body,
                ..sealed.clone()
            };
            let status = s.runtime.block_on(async {
                let response = s
                    .gateway
                    .client
                    .post(format!("{}/flow-endpoint", s.gateway.base))
                    .body(mutated.body.clone())
                    .send()
                    .await
                    .expect("the gateway answers");
                response.status().as_u16()
            });
            // Only whitespace inserted between JSON tokens leaves the request intact.
            let whitespace = matches!(mutation, Mutation::Insert(_, b' ' | b'\n' | b'\t' | b'\r'));
            if !whitespace || status != 200 {
                prop_assert!(
                    status == 421 || status == 400,
                    "status {} for {:?}",
                    status,
                    mutation
                );
            }
            Ok(())
        })
        .unwrap();
    // Still serving after all that.
    let again = s.client.seal(&json!({"action": "ping"}));
    assert_eq!(
        s.runtime
            .block_on(s.gateway.post_sealed("/flow-endpoint", &again, None))
            .0,
        200
    );
}
