//! The real binaries as child processes: `flow-service` and `flowgate-gateway`, each
//! on 127.0.0.1 port 0, configured through their environment only, their stderr
//! captured line by line, killed when dropped.
//!
//! The binaries are the ones built next to the running test executable
//! (`target/<profile>/`). `cargo nextest run --workspace` (what `scripts/test.sh`
//! runs) builds them; a run limited to this crate does not, and
//! [`binary`] then fails naming the command that does.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Alpn;

/// How long a binary may take from spawn to ready: generous, for a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(20);

/// The path of `name` built next to this test executable; panics with the command
/// that builds it when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .expect("the test executable is in a directory");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with \
         `cargo build -p flow-service -p flowgate-gateway --bins` \
         (`cargo nextest run --workspace` builds them too)",
        path.display()
    );
    path
}

/// The e2e crate's test keys (`tests/data/keys`).
pub fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/keys")
        .join(name)
}

/// A child's stderr, one entry per line, as it arrives (bytes kept as sent, so an
/// escape character would show).
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Every line so far, joined: for failure messages.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits up to ten seconds for a line containing `needle`, and returns it.
    pub async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within 10 s:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A spawned child: killed and reaped on drop.
#[derive(Debug)]
struct Process {
    child: Child,
    logs: Logs,
}

impl Process {
    /// Spawns `command` with stderr captured, and waits (up to [`START_LIMIT`]) for a
    /// line containing `ready`, which it returns. Panics with the logs when the child
    /// exits first.
    fn spawn(mut command: Command, ready: &str) -> (Self, String) {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the binary");
        let stderr = child.stderr.take().unwrap();
        let logs = Logs::default();
        let (sender, lines) = mpsc::channel::<String>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            // Lines as bytes: a raw escape or invalid UTF-8 is kept, not dropped.
            while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&raw)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                sink.0.lock().unwrap().push(line.clone());
                let _ = sender.send(line);
                raw.clear();
            }
        });
        let process = Self { child, logs };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(ready) => return (process, line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the binary exited before {ready:?}:\n{}",
                        process.logs.text()
                    )
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "no {ready:?} line within {START_LIMIT:?}:\n{}",
                    process.logs.text()
                ),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command for `binary` with none of the caller's own settings for either binary:
/// text logs at `info`, no colours.
fn clean_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("FLOWGATE_")
            || key.starts_with("FLOW_SERVICE_")
            || key.starts_with("OTEL_")
            || key == "RUST_LOG"
        {
            command.env_remove(&*key);
        }
    }
    command.env("RUST_LOG", "info").env("NO_COLOR", "1");
    command
}

/// The address after `key` in a log line, up to the first space or `)`.
fn address_after(line: &str, key: &str) -> SocketAddr {
    let start = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {line:?}"))
        + key.len();
    let rest = &line[start..];
    let end = rest.find([' ', ')']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("no address after {key:?} in {line:?}"))
}

/// The `flow-service` binary: the reference flows (`signup`, the default, and
/// `booking`) in strict mode, an in-memory store, gRPC and admin listeners on
/// 127.0.0.1 port 0.
#[derive(Debug)]
pub struct FlowService {
    process: Process,
    /// The gRPC listener.
    pub addr: SocketAddr,
    /// The admin listener (`GET /metrics`).
    pub admin: SocketAddr,
}

impl FlowService {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with `env` added to (or overriding) the defaults.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let mut command = clean_command(&binary("flow-service"));
        command
            .env("FLOW_SERVICE_LISTEN", "127.0.0.1:0")
            .env("FLOW_SERVICE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("FLOW_SERVICE_DATABASE_URL", "memory:")
            .env("FLOW_SERVICE_STRICT", "1")
            .env("FLOW_SERVICE_DRAIN_DELAY", "0s")
            .envs(env.iter().copied());
        let (process, line) = Process::spawn(command, "flow service listening");
        let addr = address_after(&line, "addr=");
        let admin_line = process
            .logs
            .lines()
            .into_iter()
            .find(|l| l.contains("admin listening"))
            .unwrap_or_else(|| panic!("no admin line:\n{}", process.logs.text()));
        let admin = address_after(&admin_line, "addr=");
        Self {
            process,
            addr,
            admin,
        }
    }

    /// `http://addr`, for `FLOWGATE_BACKEND`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn logs(&self) -> &Logs {
        &self.process.logs
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics_text(self.admin).await
    }
}

/// The `flowgate-gateway` binary over a certificate made for the test, its public and
/// admin listeners on 127.0.0.1 port 0.
#[derive(Debug)]
pub struct Gateway {
    process: Process,
    /// The public HTTPS listener.
    pub public: SocketAddr,
    /// The admin listener (`/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// The certificate the gateway serves; [`Gateway::client`] trusts only it.
    pub cert_pem: String,
    _dir: tempfile::TempDir,
}

/// How to start a [`Gateway`] beyond its backend.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions<'a> {
    /// Variables added to (or overriding) the defaults.
    pub env: Vec<(&'a str, String)>,
    /// The open-file limit to run under (set with util-linux `prlimit`).
    pub nofile: Option<u32>,
    /// A route file, written to the gateway's directory and named in `FLOWGATE_CONFIG`.
    pub route_file: Option<String>,
}

impl<'a> GatewayOptions<'a> {
    pub fn env(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    /// Meta mode with the test key `pkcs1.pem` and `app_secret`.
    pub fn meta(self, app_secret: &str) -> Self {
        self.env("FLOWGATE_MODE", "meta")
            .env(
                "FLOWGATE_PRIVATE_KEY",
                key_file("pkcs1.pem").display().to_string(),
            )
            .env("FLOWGATE_APP_SECRET", app_secret)
    }

    pub fn nofile(mut self, limit: u32) -> Self {
        self.nofile = Some(limit);
        self
    }

    pub fn route_file(mut self, toml: impl Into<String>) -> Self {
        self.route_file = Some(toml.into());
        self
    }
}

impl Gateway {
    /// Starts in front of `backend` (`http://host:port`) with `options`, and waits
    /// until it is listening and ready (`/readyz`: the flow service is serving).
    pub async fn start(backend: &str, options: GatewayOptions<'_>) -> Self {
        let (mut command, dir, cert_pem) = Self::command(backend, &options);
        command.env("FLOWGATE_LISTEN", "127.0.0.1:0");
        command.env("FLOWGATE_ADMIN_LISTEN", "127.0.0.1:0");
        let (process, line) = Process::spawn(command, "flowgate gateway listening");
        let gateway = Self {
            public: address_after(&line, "https://"),
            admin: address_after(&line, "admin=Some("),
            process,
            cert_pem,
            _dir: dir,
        };
        let deadline = Instant::now() + START_LIMIT;
        let admin = reqwest::Client::builder().no_proxy().build().unwrap();
        loop {
            let ready = admin
                .get(format!("http://{}/readyz", gateway.admin))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway never became ready:\n{}",
                gateway.logs().text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gateway
    }

    /// Runs the gateway as [`Gateway::start`] would, expecting it to stop at start:
    /// its exit status and stderr.
    pub fn fail_to_start(backend: &str, options: GatewayOptions<'_>) -> (ExitStatus, String) {
        let (mut command, _dir, _) = Self::command(backend, &options);
        command
            .env("FLOWGATE_LISTEN", "127.0.0.1:0")
            .env("FLOWGATE_ADMIN_LISTEN", "off")
            .stdin(Stdio::null());
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the gateway");
        // Read as it comes, so that a full pipe never blocks the child.
        let mut pipe = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            stderr
        });
        let deadline = Instant::now() + START_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gateway did not stop within {START_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = reader.join().unwrap();
        (status, stderr)
    }

    fn command(
        backend: &str,
        options: &GatewayOptions<'_>,
    ) -> (Command, tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let names = ["localhost", "127.0.0.1"].map(String::from).to_vec();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let gateway = binary("flowgate-gateway");
        let mut command = match options.nofile {
            // prlimit execs the gateway: the child is the gateway itself.
            Some(n) => {
                let mut command = clean_command(Path::new("prlimit"));
                command
                    .arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(&gateway);
                command
            }
            None => clean_command(&gateway),
        };
        command
            .env("FLOWGATE_BACKEND", backend)
            .env("FLOWGATE_TLS_CERT", &cert)
            .env("FLOWGATE_TLS_KEY", &key)
            .env("FLOWGATE_SHUTDOWN_GRACE", "1s")
            .env("FLOWGATE_DNS_REFRESH", "100ms");
        if let Some(toml) = &options.route_file {
            let file = dir.path().join("routes.toml");
            std::fs::write(&file, toml).unwrap();
            command.env("FLOWGATE_CONFIG", &file);
        }
        command.envs(options.env.iter().map(|(k, v)| (k, v.as_str())));
        (command, dir, generated.cert.pem())
    }

    pub fn logs(&self) -> &Logs {
        &self.process.logs
    }

    /// `https://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.public)
    }

    /// An HTTPS client that trusts only this gateway's certificate.
    pub fn client(&self, alpn: Alpn) -> reqwest::Client {
        crate::https_builder(&self.cert_pem, alpn)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// A TLS client configuration trusting only this gateway, offering `alpn`.
    pub fn tls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics_text(self.admin).await
    }

    /// One metric line's value (`name{labels}` exactly as rendered), 0 when absent.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        metric_value(&self.metrics().await, name_and_labels)
    }
}

async fn metrics_text(admin: SocketAddr) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("the admin listener answers")
        .text()
        .await
        .unwrap()
}

/// The value of the line `name_and_labels value` in Prometheus text; 0 when absent.
pub fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// The sum of the values of the lines starting with `prefix` (a name and the start of
/// its labels, like `calls_total{method="Init",`).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The series in Prometheus text: each sample's name and labels, without its value.
pub fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}
