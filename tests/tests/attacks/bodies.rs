//! Bodies that never come: HTTP/2 streams that send their headers and stop, and a
//! declared length no body could have. Neither may take an in-flight slot from a
//! real request.

use std::time::{Duration, Instant};

use flowgate_e2e::spawned::{FlowService, Gateway, GatewayOptions};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{client, real_init};

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls(gateway: &Gateway, alpn: &[u8]) -> Tls {
    let tcp = TcpStream::connect(gateway.public).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(gateway.tls_config(&[alpn]));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// An HTTP/2 connection to `gateway`, its connection task running.
async fn h2(gateway: &Gateway) -> h2::client::SendRequest<bytes::Bytes> {
    let (client, connection) = h2::client::handshake(tls(gateway, b"h2").await)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    client
}

/// Sends the headers of a POST to the endpoint declaring `length` bytes of body, and
/// never the body: the answer to come, and the half-open body stream (kept, so the
/// stream stays open from the client's side).
async fn headers_only(
    client: h2::client::SendRequest<bytes::Bytes>,
    port: u16,
    length: u64,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    h2::client::ResponseFuture,
    h2::SendStream<bytes::Bytes>,
) {
    let mut client = client.ready().await.expect("the connection takes a stream");
    let request = http::Request::post(format!("https://localhost:{port}/flow-endpoint"))
        .header("content-type", "application/json")
        .header("content-length", length)
        .body(())
        .unwrap();
    let (response, body) = client.send_request(request, false).unwrap();
    (client, response, body)
}

/// Four connections with 40 streams each that never send their body, against an
/// in-flight limit of 8 under a 256 open-file limit: the gateway reads bodies before
/// admission, so none of them holds a slot, real requests are served throughout, and
/// each stalled stream is answered 408 at the end of its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_send_their_body_hold_no_slot() {
    let service = FlowService::start().await;
    let gateway = Gateway::start(
        &service.url(),
        GatewayOptions::default()
            .env("FLOWGATE_MAX_IN_FLIGHT", "8")
            .env("FLOWGATE_REQUEST_TIMEOUT", "2s")
            .nofile(256),
    )
    .await;
    let port = gateway.public.port();
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut client = h2(&gateway).await;
        for _ in 0..40 {
            let (next, response, body) = headers_only(client, port, 100).await;
            client = next;
            stalled.push((response, body));
        }
    }
    // Let the headers reach the gateway before the real requests go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gateway.metric("flowgate_in_flight").await,
        0.0,
        "a stalled stream holds a slot"
    );
    let real = client(&gateway);
    for _ in 0..10 {
        real_init(&gateway, &real).await;
    }

    let mut statuses = Vec::new();
    for (response, _body) in stalled {
        let answer = tokio::time::timeout(Duration::from_secs(20), response)
            .await
            .expect("a stalled stream is answered within its budget and a margin")
            .expect("a stalled stream gets an answer, not a reset");
        statuses.push(answer.status().as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 408), "{statuses:?}");
    assert_eq!(gateway.metric("flowgate_shed_total").await, 0.0);
}

/// `Content-Length: 99999999999` is refused at once, over HTTP/1.1 and HTTP/2, without
/// waiting for the body or its budget (20 s), and without a slot: with an in-flight
/// limit of 1, a real request is served while the refused connections stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_length_is_413_at_once_and_holds_no_slot() {
    const HUGE: u64 = 99_999_999_999;
    let service = FlowService::start().await;
    let gateway = Gateway::start(
        &service.url(),
        GatewayOptions::default()
            .env("FLOWGATE_MAX_IN_FLIGHT", "1")
            .env("FLOWGATE_REQUEST_TIMEOUT", "20s"),
    )
    .await;
    let started = Instant::now();

    // HTTP/1.1: the headers, then nothing.
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut stream = tls(&gateway, b"http/1.1").await;
        stream
            .write_all(
                format!(
                    "POST /flow-endpoint HTTP/1.1\r\nHost: localhost\r\n\
                     Content-Type: application/json\r\nContent-Length: {HUGE}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        held.push(stream);
    }
    for stream in &mut held {
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
            .await
            .expect("413 well before the 20 s budget")
            .unwrap();
        assert_eq!(&head, b"HTTP/1.1 413", "{}", String::from_utf8_lossy(&head));
    }

    // HTTP/2: many such streams on one connection.
    let mut client = h2(&gateway).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let (next, response, body) = headers_only(client, gateway.public.port(), HUGE).await;
        client = next;
        streams.push((response, body));
    }
    for (response, _body) in streams {
        let answer = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("413 well before the 20 s budget")
            .unwrap();
        assert_eq!(answer.status(), 413);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused after {:?}",
        started.elapsed()
    );

    // The refused connections and streams are still open; the one slot is free.
    assert_eq!(gateway.metric("flowgate_in_flight").await, 0.0);
    real_init(&gateway, &super::client(&gateway)).await;
    assert_eq!(gateway.metric("flowgate_shed_total").await, 0.0);
    drop((held, client));
}
