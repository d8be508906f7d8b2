//! The server's threads (`FLOWGATE_WORKER_THREADS`): each accepted connection goes to
//! the runtime serving the fewest, and every request of it is answered there; a
//! connection on another thread is drained at shutdown like one on the caller's; the
//! gateway is ready only while every thread reaches its flow service.
//! Real listeners and real TCP connections; the handlers answer with the name of the
//! thread they ran on.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use flowgate_gateway::envelope::Envelope;
use flowgate_gateway::server::{self, ConnectionLimits, Endpoint, Shard, Workers};
use flowgate_gateway::upstream::Upstream;
use flowgate_gateway::{AppState, Listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::connections::exchange_until;

/// Answers `GET /` with `thread=<name>;`, after `delay`.
fn router(delay: Duration) -> Router {
    Router::new().route(
        "/",
        get(move || async move {
            tokio::time::sleep(delay).await;
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned();
            format!("thread={name};")
        }),
    )
}

/// Serves one plain-HTTP endpoint on this runtime and on each of `workers`, until
/// the returned sender is dropped or fires, then drains for up to `grace`; its
/// address and the server's task.
fn start(
    workers: &Workers,
    delay: Duration,
    grace: Duration,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shards = workers
        .handles()
        .map(|runtime| Shard {
            runtime: runtime.clone(),
            router: router(delay),
        })
        .collect();
    let endpoint = Endpoint {
        name: "public",
        listener,
        router: router(delay),
        shards,
        tls: None,
        max_connections: 100,
        max_connections_per_address: 0,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let limits = ConnectionLimits::default();
        let shutdown = async {
            let _ = stopped.await;
        };
        server::serve(vec![endpoint], &limits, shutdown, grace).await
    });
    (addr, stop, task)
}

/// One `GET /` on an open keep-alive connection: the thread that answered.
async fn thread_of(stream: &mut TcpStream) -> String {
    let thread = |text: &str| {
        let rest = text.split("thread=").nth(1)?;
        Some(rest[..rest.find(';')?].to_owned())
    };
    let request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    let text = exchange_until(stream, request, |text| thread(text).is_some()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    thread(&text).unwrap()
}

/// Stops the server, which must return after `at_least` and within 5 s.
async fn stop_after(
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    at_least: Duration,
) {
    let started = Instant::now();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let waited = started.elapsed();
    assert!(
        (at_least..Duration::from_secs(5)).contains(&waited),
        "returned after {waited:?}"
    );
}

/// Stops the threads, which must end at once.
fn stop_threads(workers: Workers) {
    let started = Instant::now();
    drop(workers);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Closes a connection, and waits until the server has closed its side too.
async fn close(mut stream: TcpStream) {
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    // The connection's task ends just after it closed the socket.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn each_connection_goes_to_the_least_busy_thread_and_stays_there() {
    let workers = Workers::start(2, "test-worker").unwrap();
    let (addr, stop, server) = start(&workers, Duration::ZERO, Duration::from_secs(5));
    let here = std::thread::current().name().unwrap().to_owned();

    // Opened one after another and kept open: each finds the others' counts, and
    // on a tie the other threads come before this one, which also accepts.
    let mut connections = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..6 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        threads.push(thread_of(&mut stream).await);
        connections.push(stream);
    }
    let expected = ["test-worker-1", "test-worker-2", here.as_str()].repeat(2);
    assert_eq!(threads, expected);

    // Every later request of a connection is answered on its thread.
    for (stream, thread) in connections.iter_mut().zip(&threads) {
        for _ in 0..3 {
            assert_eq!(&thread_of(stream).await, thread);
        }
    }

    // One of this thread's and one of the first worker's close: the next two
    // connections go where the fewest are served.
    close(connections.remove(5)).await; // this thread
    close(connections.remove(0)).await; // test-worker-1
    let mut next = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        next.push(thread_of(&mut stream).await);
        connections.push(stream);
    }
    assert_eq!(next, ["test-worker-1", here.as_str()]);

    drop(stop);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_request_on_another_thread_is_answered_before_the_server_stops() {
    let workers = Workers::start(1, "test-worker").unwrap();
    let (addr, stop, server) = start(&workers, Duration::from_millis(500), Duration::from_secs(5));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let slow = tokio::spawn(async move { thread_of(&mut stream).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The server waits for the answer on the other thread (due about 400 ms after
    // the stop) before it returns.
    stop_after(stop, server, Duration::from_millis(300)).await;
    assert_eq!(slow.await.unwrap(), "test-worker-1");
    stop_threads(workers);
}

#[tokio::test]
async fn a_request_on_another_thread_past_the_grace_period_is_cut_and_the_threads_stop() {
    let workers = Workers::start(1, "test-worker").unwrap();
    let (addr, stop, server) = start(
        &workers,
        Duration::from_secs(30),
        Duration::from_millis(300),
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The grace period (300 ms), then the connection is closed.
    stop_after(stop, server, Duration::from_millis(300)).await;
    // Without an answer.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("closed within 5 s")
        .unwrap();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    stop_threads(workers);
}

/// `/readyz` with one more thread whose flow service is at `thread_backend`, the main
/// thread's reaching a real `grpc.health.v1` server that reports SERVING, once the
/// main thread sees that server serving.
async fn readiness(thread_backend: Option<&str>) -> u16 {
    let (serving, _) = crate::connections::health_server().await;
    let upstream = |backend: String| {
        let upstream = Upstream::new(&backend, Duration::from_secs(5)).unwrap();
        AppState::single(
            "/flow-endpoint",
            Envelope::Plain,
            upstream,
            Duration::from_secs(10),
        )
    };
    let state = upstream(serving.clone());
    let workers = Workers::start(1, "test-worker").unwrap();
    let runtime = workers.handles().next().unwrap().clone();
    let backend = thread_backend.map_or(serving, str::to_owned);
    // Made on that thread, as the gateway makes it.
    let other = runtime
        .spawn(async move { upstream(backend) })
        .await
        .unwrap();
    assert!(
        state.upstreams()[0].serving().await,
        "the main thread's replica serves"
    );

    let public = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/readyz", admin.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(flowgate_gateway::run(
        Listeners {
            public,
            admin: Some(admin),
        },
        state,
        vec![(runtime, other)],
        None,
        ConnectionLimits::default(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = client.get(&url).send().await.unwrap().status().as_u16();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    stop_threads(workers);
    status
}

#[tokio::test]
async fn readiness_asks_every_thread() {
    assert_eq!(readiness(None).await, 200);
    // A port nothing listens on any more: the other thread reaches no replica.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", closed.local_addr().unwrap());
    assert_eq!(readiness(Some(&closed)).await, 503);
}
