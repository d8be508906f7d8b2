//! Metric series made at will: thousands of made-up `error_key`s sent to the gateway,
//! thousands of made-up gRPC method paths sent to the flow service. Neither binary's
//! `/metrics` grows with them.

use std::collections::BTreeSet;
use std::sync::Arc;

use flowgate_e2e::spawned::{
    FlowService, Gateway, GatewayOptions, metric_sum, metric_value, series,
};
use flowgate_e2e::{read, unique, whatsapp};
use serde_json::json;

use super::{client, real_init};

/// Made-up `error_key`s sent to the gateway, made-up method paths to the flow service.
/// Fewer than the 5,000 keys and 2,000 paths of the original report: an unbounded label
/// shows as one new series per value at any count, and these keep the test to seconds.
const ERROR_KEYS: usize = 1_000;
const METHODS: usize = 500;

/// Sends error notifications with the keys `{prefix}-{i}` for `i` in `range`, sixteen
/// at a time; each must be acknowledged (200).
async fn notify(gateway: &Arc<Gateway>, prefix: &str, range: std::ops::Range<usize>) {
    let workers = 16;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (gateway, prefix, range) = (gateway.clone(), prefix.to_owned(), range.clone());
        tasks.push(tokio::spawn(async move {
            let client = client(&gateway);
            for i in range.skip(worker).step_by(workers) {
                let data = json!({"error": format!("{prefix}-{i}"), "error_message": "x"});
                let body = whatsapp("data_exchange", "attacker", "WELCOME_SCREEN", data);
                let response = client
                    .post(gateway.url("/flow-endpoint"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("the request reaches the gateway");
                let (status, answer) = read(response).await;
                assert_eq!(status, 200, "{answer}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// The series present in both texts are the same set: none was added.
fn assert_same_series(before: &BTreeSet<String>, after: &str, made_up: &str) {
    assert!(
        !after.contains(made_up),
        "a made-up value became a label:\n{after}"
    );
    let after = series(after);
    let added: Vec<_> = after.difference(before).collect();
    assert!(added.is_empty(), "new series: {added:?}");
}

/// 5,000 distinct made-up `error_key`s: each acknowledged, every one counted under
/// `error_key="other"`, and the gateway's series after the first few stay the same.
/// A real request is served during the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_error_keys_add_no_gateway_series() {
    let service = FlowService::start().await;
    let gateway = Arc::new(Gateway::start(&service.url(), GatewayOptions::default()).await);
    let prefix = format!("made-up-{}", unique());
    // A few first, so every series the flood can touch exists already.
    real_init(&gateway, &client(&gateway)).await;
    notify(&gateway, &prefix, 0..16).await;
    let before = series(&gateway.metrics().await);

    let flood = tokio::spawn({
        let (gateway, prefix) = (gateway.clone(), prefix.clone());
        async move { notify(&gateway, &prefix, 16..ERROR_KEYS).await }
    });
    real_init(&gateway, &client(&gateway)).await;
    assert!(
        !flood.is_finished(),
        "the flood ended before the real request"
    );
    flood.await.unwrap();

    let after = gateway.metrics().await;
    assert_same_series(&before, &after, &prefix);
    assert_eq!(
        metric_value(
            &after,
            r#"flowgate_error_notifications_total{error_key="other"}"#
        ),
        ERROR_KEYS as f64
    );
}

/// 2,000 calls to made-up gRPC methods on the flow service binary: each is
/// UNIMPLEMENTED, all counted under `method="other"`, and its series stay the same. A
/// real request through a gateway is served during the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_grpc_methods_add_no_flow_service_series() {
    let service = Arc::new(FlowService::start().await);
    let gateway = Gateway::start(&service.url(), GatewayOptions::default()).await;
    let prefix = format!("madeup{}", unique());
    let grpc = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    let call = {
        let (service, prefix, grpc) = (service.clone(), prefix.clone(), grpc.clone());
        move |i: usize| {
            let (service, prefix, grpc) = (service.clone(), prefix.clone(), grpc.clone());
            async move {
                let response = grpc
                    .post(format!(
                        "http://{}/{prefix}.v{i}.Service/Method{i}",
                        service.addr
                    ))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    // One empty, uncompressed message.
                    .body(vec![0u8; 5])
                    .send()
                    .await
                    .expect("the flow service answers");
                let status = response
                    .headers()
                    .get("grpc-status")
                    .map(|v| v.to_str().unwrap().to_owned());
                // Trailers-only: the status is in the headers; 12 is UNIMPLEMENTED.
                assert_eq!(status.as_deref(), Some("12"), "{response:?}");
            }
        }
    };
    for i in 0..16 {
        call(i).await;
    }
    real_init(&gateway, &client(&gateway)).await;
    let before = series(&service.metrics().await);

    let flood = tokio::spawn({
        let call = call.clone();
        async move {
            let mut workers = Vec::new();
            for worker in 0..16 {
                let call = call.clone();
                workers.push(tokio::spawn(async move {
                    for i in (16..METHODS).skip(worker).step_by(16) {
                        call(i).await;
                    }
                }));
            }
            for worker in workers {
                worker.await.unwrap();
            }
        }
    });
    real_init(&gateway, &client(&gateway)).await;
    assert!(
        !flood.is_finished(),
        "the flood ended before the real request"
    );
    flood.await.unwrap();

    let after = service.metrics().await;
    assert_same_series(&before, &after, &prefix);
    let other = metric_sum(&after, r#"flow_service_calls_total{method="other","#);
    assert_eq!(other, METHODS as f64, "{after}");
}
