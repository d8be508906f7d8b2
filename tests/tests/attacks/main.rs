//! The attacks of a hostile client, each reproduced against the spawned
//! `flowgate-gateway` and `flow-service` binaries (`flowgate_e2e::spawned`), each
//! with a real request served while it goes on.
//!
//! Attacks on connections themselves (silent TLS, trickled headers, idle
//! connections, a flood beyond the open-file limit, one address over its cap) are in
//! the gateway's own tests, `gateway/tests/gateway/connections.rs`.
//!
//! One test binary with a module per kind of attack. The binaries must be built:
//! `cargo nextest run --workspace` does it, or
//! `cargo build -p flow-service -p flowgate-gateway --bins`.

mod bodies;
mod inputs;
mod meta;
mod metrics;
mod route_file;

use flowgate_e2e::spawned::Gateway;
use flowgate_e2e::{Alpn, read, whatsapp};
use serde_json::{Value, json};

/// A real journey step: INIT of the default flow (`signup`) through `gateway`, in plain
/// mode; panics unless it is the flow's first screen.
async fn real_init(gateway: &Gateway, client: &reqwest::Client) {
    let response = client
        .post(gateway.url("/flow-endpoint"))
        .header("content-type", "application/json")
        .body(whatsapp("INIT", "real-user", "", json!({})).to_string())
        .send()
        .await
        .expect("the real request reaches the gateway");
    let (status, body) = read(response).await;
    assert_eq!(
        (status, body["screen"].as_str()),
        (200, Some("WELCOME_SCREEN")),
        "the real request: {body}"
    );
}

/// A plain-mode client over HTTP/2 and HTTP/1.1.
fn client(gateway: &Gateway) -> reqwest::Client {
    gateway.client(Alpn::Both)
}

/// The `error.code` of a JSON error answer.
fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}
