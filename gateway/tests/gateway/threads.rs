//! The server's threads (`FLOWGATE_WORKER_THREADS`): each accepted connection goes to
//! the runtime serving the fewest, and every request of it is answered there; a
//! connection on another thread is drained at shutdown like one on the caller's.
//! Real listeners and real TCP connections; the handlers answer with the name of the
//! thread they ran on.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use flowgate_gateway::server::{self, ConnectionLimits, Endpoint, Shard, Workers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

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
/// the returned sender is dropped or fires; its address and the server's task.
fn start(
    workers: &Workers,
    delay: Duration,
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
        server::serve(vec![endpoint], &limits, shutdown, Duration::from_secs(5)).await
    });
    (addr, stop, task)
}

/// One `GET /` on an open keep-alive connection: the thread that answered.
async fn thread_of(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&answer);
        if let Some(rest) = text.split("thread=").nth(1)
            && let Some(end) = rest.find(';')
        {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            return rest[..end].to_owned();
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed before answering: {text}");
        answer.extend_from_slice(&buffer[..n]);
    }
}

#[tokio::test]
async fn each_connection_goes_to_the_least_busy_thread_and_stays_there() {
    let workers = Workers::start(2, "test-worker").unwrap();
    let (addr, stop, server) = start(&workers, Duration::ZERO);
    let here = std::thread::current().name().unwrap().to_owned();

    // Opened one after another and kept open: each finds the others' counts.
    let mut connections = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..6 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        threads.push(thread_of(&mut stream).await);
        connections.push(stream);
    }
    let expected = [here.as_str(), "test-worker-1", "test-worker-2"].repeat(2);
    assert_eq!(threads, expected);

    // Every later request of a connection is answered on its thread.
    for (stream, thread) in connections.iter_mut().zip(&threads) {
        for _ in 0..3 {
            assert_eq!(&thread_of(stream).await, thread);
        }
    }

    // Two close: the next connections fill their places first.
    drop(connections.remove(4)); // test-worker-1
    drop(connections.remove(0)); // this thread
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut next = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        next.push(thread_of(&mut stream).await);
        connections.push(stream);
    }
    assert_eq!(next, [here.as_str(), "test-worker-1"]);

    drop(stop);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_request_on_another_thread_is_answered_before_the_server_stops() {
    let workers = Workers::start(1, "test-worker").unwrap();
    let (addr, stop, server) = start(&workers, Duration::from_millis(500));
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert_ne!(thread_of(&mut first).await, "test-worker-1");
    let mut second = TcpStream::connect(addr).await.unwrap();
    let slow = tokio::spawn(async move { thread_of(&mut second).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    stop.send(()).unwrap();
    assert_eq!(slow.await.unwrap(), "test-worker-1");
    server.await.unwrap().unwrap();
    // It waited for the answer, and no longer than the grace period.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    drop(workers);
}
