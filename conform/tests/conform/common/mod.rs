//! What the conformance tests share: the Flow JSON files, runs through the library,
//! and the Python reference service as a child process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flowgate_conform::endpoint::EndpointOptions;
use flowgate_conform::grpc::GrpcOptions;
use flowgate_conform::report::Report;
use flowgate_conform::scenario::Scenario;
use flowgate_conform::{Options, Target};

pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// A reference flow's Flow JSON.
pub fn flow_json(name: &str) -> String {
    std::fs::read_to_string(repo(&format!("flow-service/flows/{name}.json"))).unwrap()
}

pub const PUBLIC_KEY: &str = "tests/data/keys/pkcs1.pub.pem";
pub const PRIVATE_KEY: &str = "tests/data/keys/pkcs8-encrypted.pem";
pub const PASSPHRASE: &str = "flowgate-test";
pub const SECRET: &str = "app-secret-1";

/// Runs every check against an endpoint, trusting `ca_pem`.
pub async fn endpoint(url: String, ca_pem: &str, flow: &str, sealed: bool) -> Report {
    let target = Target::Endpoint(EndpointOptions {
        url,
        ca_pem: Some(ca_pem.as_bytes().to_vec()),
        insecure: false,
        public_key_pem: sealed.then(|| std::fs::read_to_string(repo(PUBLIC_KEY)).unwrap()),
        app_secret: sealed.then(|| SECRET.to_owned()),
    });
    run(target, flow).await
}

/// Runs every check against a flow service.
pub async fn grpc(url: String, flow: &str) -> Report {
    let target = Target::Grpc(GrpcOptions {
        url,
        flow: flow.to_owned(),
        ..GrpcOptions::default()
    });
    run(target, flow).await
}

pub async fn run(target: Target, flow: &str) -> Report {
    let report = flowgate_conform::run(Options {
        target,
        flow_json: flow_json(flow),
        scenario: Scenario::default(),
    })
    .await
    .expect("the run starts");
    eprint!("{}", report.text());
    report
}

/// Asserts that every check passed, showing the report otherwise.
pub fn assert_passes(report: &Report) {
    assert!(report.success(), "{}", report.text());
}

/// `examples/python/flow_service.py` as a child process on a free port; dropping
/// it kills the process. `None` (with a notice) when python3 lacks the example's
/// requirements, except under `CI`, where that is a failure.
#[derive(Debug)]
pub struct Python {
    pub addr: SocketAddr,
    child: Child,
}

/// Whether `python3` has the example's requirements; without them, a notice (and
/// `false`), except under `CI`, where that is a failure.
pub fn python_ready() -> bool {
    let ready = Command::new("python3")
        .args(["-c", "import grpc, grpc_health.v1, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: python3 with examples/python/requirements.txt is required"
        );
        eprintln!(
            "SKIPPED: python3 with examples/python/requirements.txt is not available \
             (pip install -r examples/python/requirements.txt)"
        );
    }
    ready
}

impl Python {
    pub fn start() -> Option<Self> {
        if !python_ready() {
            return None;
        }
        let mut child = Command::new("python3")
            .arg(repo("examples/python/flow_service.py"))
            .env("FLOW_SERVICE_LISTEN", "127.0.0.1:0")
            .env("FLOW_SERVICE_DRAIN_DELAY", "100ms")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        // The service logs its bound address once it serves; the pipe is read to the
        // end so that it never blocks on a full one.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[python flow service] {line}");
                if let Some(rest) = line.split("flow service listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<SocketAddr>().ok());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(addr)) => Some(Self { addr, child }),
            other => {
                let _ = child.kill();
                panic!("the Python flow service did not start: {other:?}");
            }
        }
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
