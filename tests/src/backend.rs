//! The flow service behind the portable tests (`tests/tests/e2e/portable.rs`): the
//! in-process Rust service, or the Python reference service
//! (`examples/python/flow_service.py`) as a real child process, chosen by
//! `FLOWGATE_E2E_FLOW_SERVICE` (see the crate doc).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flow_service::auth::AuthToken;
use flow_service::server::ServeOptions;
use tokio::task::JoinHandle;

use crate::{Probe, Service, ServiceOptions, test_serve_options};

/// The variable that chooses the implementation; unset or `rust` is the default.
pub const SWITCH: &str = "FLOWGATE_E2E_FLOW_SERVICE";

/// How long the Python service may take to start: the first start of a run
/// generates its gRPC stubs.
const PYTHON_START: Duration = Duration::from_secs(30);

/// Which implementation of the contract the portable tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The in-process Rust reference service (the default).
    Rust,
    /// `python3 examples/python/flow_service.py`, with `python3` found on `PATH`.
    Python,
}

impl Kind {
    /// Reads [`SWITCH`]; an unknown value fails the test rather than silently
    /// testing the default.
    pub fn from_env() -> Self {
        match std::env::var(SWITCH).as_deref() {
            Err(_) | Ok("") | Ok("rust") => Self::Rust,
            Ok("python") => Self::Python,
            Ok(other) => panic!("{SWITCH}={other}: expected `rust` or `python`"),
        }
    }
}

/// A flow service serving at least the reference `signup` flow (the default flow).
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    running: Option<Running>,
    stopping: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Running {
    Rust(Service),
    Python(PythonService),
}

impl Backend {
    /// Starts the implementation [`Kind::from_env`] names on a free port, with a
    /// 200 ms drain.
    pub async fn start() -> Self {
        let drain = test_serve_options().drain_delay;
        Self::start_with("127.0.0.1:0".parse().unwrap(), drain).await
    }

    /// Starts on `addr` (to come back on the same port after a stop), draining
    /// for `drain` when stopped.
    pub async fn start_with(addr: SocketAddr, drain: Duration) -> Self {
        Self::launch(addr, drain, None).await
    }

    /// Starts on a free port with `token` as its bearer token
    /// (`FLOW_SERVICE_AUTH_TOKEN`): every call but gRPC health must carry it.
    pub async fn start_with_token(token: &str) -> Self {
        let drain = test_serve_options().drain_delay;
        Self::launch(
            "127.0.0.1:0".parse().unwrap(),
            drain,
            Some(token.to_owned()),
        )
        .await
    }

    async fn launch(addr: SocketAddr, drain: Duration, token: Option<String>) -> Self {
        let running = match Kind::from_env() {
            Kind::Rust => Running::Rust(
                Service::start_with(
                    Probe::default(),
                    ServiceOptions {
                        addr,
                        serve: ServeOptions {
                            drain_delay: drain,
                            auth: token.as_deref().map(AuthToken::new),
                            ..test_serve_options()
                        },
                        ..ServiceOptions::default()
                    },
                )
                .await,
            ),
            Kind::Python => Running::Python(
                tokio::task::spawn_blocking(move || PythonService::start(addr, drain, token))
                    .await
                    .unwrap(),
            ),
        };
        let addr = match &running {
            Running::Rust(service) => service.addr,
            Running::Python(service) => service.addr,
        };
        Self {
            addr,
            running: Some(running),
            stopping: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the service to stop as an orchestrator would — SIGTERM for the Python
    /// process — and returns at once: it reports NOT_SERVING, drains, then exits.
    pub fn begin_stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        self.stopping = Some(tokio::spawn(async move {
            match running {
                Running::Rust(service) => service.stop().await,
                Running::Python(service) => tokio::task::spawn_blocking(move || service.stop())
                    .await
                    .unwrap(),
            }
        }));
    }

    /// False once a stop has finished: the process has exited, the port is closed.
    pub fn is_running(&self) -> bool {
        self.running.is_some() || self.stopping.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops gracefully (see [`Backend::begin_stop`]) and waits until it is gone.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(stopping) = self.stopping.take() {
            stopping.await.unwrap();
        }
    }
}

/// `examples/python/flow_service.py` as a child process. Its log goes to this
/// test's stderr; dropping it kills the process.
#[derive(Debug)]
struct PythonService {
    addr: SocketAddr,
    child: Child,
}

impl PythonService {
    fn start(addr: SocketAddr, drain: Duration, token: Option<String>) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/python/flow_service.py")
            .canonicalize()
            .expect("examples/python/flow_service.py exists");
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .env("FLOW_SERVICE_LISTEN", addr.to_string())
            .env(
                "FLOW_SERVICE_DRAIN_DELAY",
                format!("{}ms", drain.as_millis()),
            )
            .env_remove("FLOW_SERVICE_AUTH_TOKEN")
            .env_remove("FLOW_SERVICE_AUTH_TOKEN_FILE");
        if let Some(token) = token {
            command.env("FLOW_SERVICE_AUTH_TOKEN", token);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{SWITCH}=python: cannot run python3: {e}"));
        // The service logs its bound address once it serves; every line is
        // forwarded, and the pipe is read to the end so the service never blocks
        // on a full one.
        let (bound_tx, bound_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[python flow service] {line}");
                if let Some(rest) = line.split("flow service listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = bound_tx.send(addr.parse::<SocketAddr>().ok());
                }
            }
        });
        match bound_rx.recv_timeout(PYTHON_START) {
            Ok(Some(addr)) => Self { addr, child },
            outcome => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "the Python flow service did not start ({outcome:?}, exit {status:?}); \
                     is `pip install -r examples/python/requirements.txt` done for this python3?"
                )
            }
        }
    }

    /// SIGTERM, then waits for the process to exit.
    fn stop(mut self) {
        // One signal needs no new dependency: kill(1) sends it.
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(sent.success(), "SIGTERM to the Python flow service");
        let status = self.child.wait().expect("wait for the Python flow service");
        assert!(
            status.success(),
            "the Python flow service exited with {status}"
        );
    }
}

impl Drop for PythonService {
    fn drop(&mut self) {
        // A test that failed midway must not leave a process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
