//! Starting the servers under test as child processes, configured only through their
//! documented environment (README's configuration tables): flowgate's release
//! `flow-service` and `flowgate-gateway` binaries, and the key pair from
//! `flowgate-gateway keygen`. Every child, and whatever it started, is killed when its
//! handle drops.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::cert::Cert;
use crate::procs::Watched;

/// A running child process; killed on drop. Its stderr goes to a log file.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    child: std::process::Child,
    log: PathBuf,
}

impl Server {
    /// Starts `command`, logging its stderr to `<dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        addr: SocketAddr,
        mut command: Command,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            addr,
            child,
            log,
        })
    }

    pub fn watched(&self) -> Watched {
        Watched::Tree(self.child.id())
    }

    /// The end of its log, to explain a failure.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fails with the log's tail when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
        Ok(())
    }
}

impl Drop for Server {
    /// Kills the child and every process it started: uvicorn's workers outlive a
    /// killed uvicorn, and would go on using CPU and memory through the later runs.
    fn drop(&mut self) {
        let descendants: Vec<String> = crate::procs::tree(self.child.id())
            .into_iter()
            .skip(1)
            .map(|pid| pid.to_string())
            .collect();
        let _ = self.child.kill();
        if !descendants.is_empty() {
            // std kills only its own children; procps' `kill` takes any pid.
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&descendants)
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Where the release binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub gateway: PathBuf,
    pub flow_service: PathBuf,
}

impl Binaries {
    pub fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        let binaries = Self {
            gateway: dir.join("flowgate-gateway"),
            flow_service: dir.join("flow-service"),
        };
        for path in [&binaries.gateway, &binaries.flow_service] {
            if !path.is_file() {
                bail!(
                    "{} not found: build it with `cargo build --release -p flowgate-gateway -p flow-service`",
                    path.display()
                );
            }
        }
        Ok(binaries)
    }

    /// A flow service on a free port with the store at `database_url`.
    pub fn flow_service(
        &self,
        name: &str,
        database_url: &str,
        dir: &Path,
    ) -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let mut command = Command::new(&self.flow_service);
        command
            .env("FLOW_SERVICE_LISTEN", addr.to_string())
            .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
            .env("FLOW_SERVICE_DATABASE_URL", database_url)
            .env("RUST_LOG", log_filter());
        Server::spawn(name, addr, command, dir)
    }

    /// A gateway on a free port in front of `backends`, serving `cert`; Meta's encrypted
    /// endpoint when `meta` is given. Started through a shell that first raises its
    /// open-file limit, so it can hold thousands of connections.
    pub fn gateway(
        &self,
        backends: &[&Server],
        cert: &Cert,
        meta: Option<&MetaKeys>,
        dir: &Path,
    ) -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let backend: Vec<String> = backends
            .iter()
            .map(|b| format!("http://{}", b.addr))
            .collect();
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(r#"ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0""#)
            .arg(&self.gateway)
            .env_remove("FLOWGATE_CONFIG")
            .env("FLOWGATE_LISTEN", addr.to_string())
            .env("FLOWGATE_ADMIN_LISTEN", "off")
            .env("FLOWGATE_BACKEND", backend.join(","))
            .env("FLOWGATE_TLS_CERT", &cert.cert_file)
            .env("FLOWGATE_TLS_KEY", &cert.key_file)
            .env("RUST_LOG", log_filter());
        match meta {
            Some(keys) => command
                .env("FLOWGATE_MODE", "meta")
                .env("FLOWGATE_PRIVATE_KEY", &keys.private_key_file)
                .env("FLOWGATE_APP_SECRET", &keys.app_secret),
            None => command.env("FLOWGATE_MODE", "plain"),
        };
        Server::spawn("gateway", addr, command, dir)
    }

    /// A key pair from `flowgate-gateway keygen`, and an app secret.
    pub fn keygen(&self, dir: &Path) -> anyhow::Result<MetaKeys> {
        let private_key_file = dir.join("private.pem");
        let output = Command::new(&self.gateway)
            .arg("keygen")
            .arg("--out")
            .arg(&private_key_file)
            .output()
            .context("running flowgate-gateway keygen")?;
        if !output.status.success() {
            bail!(
                "flowgate-gateway keygen failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(MetaKeys {
            private_key_file,
            public_pem: String::from_utf8(output.stdout)?,
            app_secret: "bench-app-secret".into(),
        })
    }
}

/// The business key pair and app secret of Meta's encrypted endpoint.
#[derive(Debug, Clone)]
pub struct MetaKeys {
    pub private_key_file: PathBuf,
    pub public_pem: String,
    pub app_secret: String,
}

/// The servers' log filter: `RUST_LOG` when set, else warnings only, so per-request log
/// lines cost nothing in either flowgate or pywa (uvicorn's access log is off too).
/// flowgate's requests are traced at every level, so their spans are still made.
pub fn log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `pid` is still a process that runs (a zombie awaiting its reaper is not).
    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .next()?
                    .to_owned();
                Some(state != "Z" && state != "X")
            })
            .unwrap_or(false)
    }

    #[test]
    fn dropping_a_server_kills_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        // A shell that starts a sleeper and waits for it, like uvicorn and its workers.
        command.args(["-c", "sleep 60 & wait"]);
        let server = Server::spawn("tree", free_addr().unwrap(), command, dir.path()).unwrap();
        let started = std::time::Instant::now();
        let sleeper = loop {
            if let Some(&pid) = crate::procs::tree(server.child.id()).get(1) {
                break pid;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no sleeper started"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(alive(sleeper));
        drop(server);
        let started = std::time::Instant::now();
        while alive(sleeper) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the sleeper outlived its server"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
