//! What the modules that spawn the real binaries share: a free port, the flow service's
//! binary, a spawned binary's stderr, and waiting until a gateway is ready.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 when asked.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `flow-service` binary, built beside the gateway's.
pub fn service_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_flowgate-gateway")).with_file_name("flow-service");
    assert!(
        bin.exists(),
        "build the flow-service binary first: {}",
        bin.display()
    );
    bin
}

/// The lines `child` writes to its piped stderr, collected by a thread of their own.
pub fn stderr_lines(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Waits until the gateway whose admin listener is on `admin` answers `/readyz` with
/// 200 (its flow service reports SERVING); after 20 s, fails with `logs()`.
pub async fn wait_ready(http: &reqwest::Client, admin: u16, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
