//! The load generator: a fixed number of HTTP/1.1 keep-alive connections over TLS
//! (rustls, trusting exactly the server's certificate), each sending one request at a
//! time — as WhatsApp-like callers do — either as fast as answers come back (closed
//! loop) or at a fixed total rate (open loop, latency measured from each request's
//! scheduled time so a slow answer is not hidden by the requests it delays).
//!
//! Connections are opened before the timed window, so TLS handshakes are not in it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::workload::{Step, Workload};

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Target {
    /// `https://localhost:<port><path>` on `addr`, trusting exactly `cert_pem`.
    pub fn new(addr: SocketAddr, path: &str, cert_pem: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(cert_pem.as_bytes())?)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            addr,
            path: path.to_owned(),
            tls: Arc::new(config),
        })
    }

    /// One keep-alive connection: TCP, TLS handshake, HTTP/1.1.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(driver);
        Ok(Connection {
            sender,
            path: self.path.clone(),
        })
    }
}

/// One open connection.
#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    path: String,
}

/// How one request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Right,
    /// A 2xx whose body is not the expected answer (or does not open).
    Wrong,
    NonSuccess,
    /// The connection failed.
    Failed,
}

impl Connection {
    /// Sends one request and checks its answer.
    pub async fn send(&mut self, step: &Step) -> Answer {
        let mut request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(signature) = &step.signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let request = request
            .body(Full::new(step.body.clone()))
            .expect("a request built from valid parts");
        if self.sender.ready().await.is_err() {
            return Answer::Failed;
        }
        let Ok(response) = self.sender.send_request(request).await else {
            return Answer::Failed;
        };
        let status = response.status();
        let Ok(body) = response.into_body().collect().await else {
            return Answer::Failed;
        };
        if !status.is_success() {
            return Answer::NonSuccess;
        }
        let body = body.to_bytes();
        let plain = match &step.opener {
            Some(opener) => match opener.open(&body) {
                Ok(plain) => plain,
                Err(_) => return Answer::Wrong,
            },
            None => body.to_vec(),
        };
        if step.expect.matches(&plain) {
            Answer::Right
        } else {
            Answer::Wrong
        }
    }
}

/// How to pace requests.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each connection sends its next request when the last is answered.
    ClosedLoop,
    /// This many requests per second in all, spread over the connections.
    Rate(f64),
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub right: u64,
    pub wrong: u64,
    pub non_success: u64,
    pub failed: u64,
    pub jobs: u64,
    pub elapsed: Duration,
    /// Sorted request latencies, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Open loop: how late the load generator itself sent each request whose scheduled
    /// time was still ahead when a connection took it (sent less scheduled, µs, sorted):
    /// its timer's millisecond ticks and its threads waiting for a core. The latencies
    /// include it; the servers had no part in it.
    pub late_us: Vec<u32>,
    /// Open loop: requests whose scheduled time had already passed when a connection was
    /// free to take them (every connection was busy: waiting for an answer, or, on a busy
    /// machine, the generator itself slow to hand on the last one).
    pub behind: u64,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0–1), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        quantile(&self.latencies_us, q).map_or(0.0, |us| f64::from(us) / 1000.0)
    }

    /// How late the load generator sent requests scheduled ahead, at quantile `q` (0–1),
    /// in milliseconds; `None` in a closed-loop run or when none was scheduled ahead.
    pub fn late_ms(&self, q: f64) -> Option<f64> {
        quantile(&self.late_us, q).map(|us| f64::from(us) / 1000.0)
    }

    /// [`Outcome::late_ms`] at p50 and p99, as the report gives it.
    pub fn late_latency(&self) -> Option<crate::report::Latency> {
        Some(crate::report::Latency {
            p50: self.late_ms(0.50)?,
            p99: self.late_ms(0.99)?,
        })
    }
}

/// The value at quantile `q` (0–1) of sorted `values`.
fn quantile(values: &[u32], q: f64) -> Option<u32> {
    let last = values.len().checked_sub(1)?;
    Some(values[(last as f64 * q).round() as usize])
}

fn micros(elapsed: Duration) -> u32 {
    elapsed.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Opens `connections` connections, then runs the workload on them for `duration`.
/// `on_start` is called right when the timed window opens (to sample CPU); the
/// window closes when the last connection has finished its job in hand.
pub async fn run(
    target: &Target,
    connections: usize,
    workload: Arc<Workload>,
    pace: Pace,
    duration: Duration,
    on_start: impl FnOnce(),
) -> anyhow::Result<Outcome> {
    let mut open = Vec::with_capacity(connections);
    for _ in 0..connections {
        open.push(target.connect().await.context("opening a connection")?);
    }
    let scheduled = Arc::new(AtomicU64::new(0));
    on_start();
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = open
        .into_iter()
        .map(|connection| {
            let workload = workload.clone();
            let scheduled = scheduled.clone();
            tokio::spawn(connection_loop(
                connection, workload, pace, start, deadline, scheduled,
            ))
        })
        .collect();
    let mut outcome = Outcome::default();
    for task in tasks {
        let part = task.await?;
        outcome.requests += part.requests;
        outcome.right += part.right;
        outcome.wrong += part.wrong;
        outcome.non_success += part.non_success;
        outcome.failed += part.failed;
        outcome.jobs += part.jobs;
        outcome.latencies_us.extend(part.latencies_us);
        outcome.late_us.extend(part.late_us);
        outcome.behind += part.behind;
    }
    outcome.elapsed = start.elapsed();
    outcome.latencies_us.sort_unstable();
    outcome.late_us.sort_unstable();
    Ok(outcome)
}

async fn connection_loop(
    mut connection: Connection,
    workload: Arc<Workload>,
    pace: Pace,
    start: Instant,
    deadline: Instant,
    scheduled: Arc<AtomicU64>,
) -> Outcome {
    let mut outcome = Outcome::default();
    'jobs: while Instant::now() < deadline {
        let Some(job) = workload.next_job() else {
            break;
        };
        for step in &job {
            // Open loop: this request's slot in the schedule, shared by all connections.
            let due = match pace {
                Pace::ClosedLoop => Instant::now(),
                Pace::Rate(rate) => {
                    let slot = scheduled.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(slot as f64 / rate);
                    if due >= deadline {
                        break 'jobs;
                    }
                    if due > Instant::now() {
                        tokio::time::sleep_until(due.into()).await;
                        outcome.late_us.push(micros(due.elapsed()));
                    } else {
                        outcome.behind += 1;
                    }
                    due
                }
            };
            let answer = connection.send(step).await;
            outcome.requests += 1;
            outcome.latencies_us.push(micros(due.elapsed()));
            match answer {
                Answer::Right => outcome.right += 1,
                Answer::Wrong => outcome.wrong += 1,
                Answer::NonSuccess => outcome.non_success += 1,
                Answer::Failed => {
                    // A broken connection would fail every later request at once and
                    // flood the count; stop this connection instead.
                    outcome.failed += 1;
                    break 'jobs;
                }
            }
            if answer != Answer::Right {
                continue 'jobs;
            }
        }
        outcome.jobs += 1;
    }
    outcome
}

/// Sends `probe` on fresh connections until it is answered right, for up to `wait`.
pub async fn wait_ready(target: &Target, probe: &Step, wait: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + wait;
    let mut last = String::from("no attempt");
    while Instant::now() < until {
        match target.connect().await {
            Ok(mut connection) => match connection.send(probe).await {
                Answer::Right => return Ok(()),
                other => last = format!("{other:?}"),
            },
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{} not ready within {wait:?}: {last}", target.addr)
}

/// Opens up to `count` connections, each answering one `probe`, and keeps them open.
/// Returns the connections held; opening stops at the first failures.
pub async fn hold_idle(target: &Target, count: usize, probe: &Step) -> Vec<Connection> {
    // Handshakes in parallel batches: quick, without a storm of thousands at once.
    const BATCH: usize = 200;
    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        let batch = BATCH.min(count - held.len());
        let opened: Vec<_> = (0..batch)
            .map(|_| {
                let target = target.clone();
                let probe = probe.clone();
                tokio::spawn(async move {
                    let mut connection = target.connect().await.ok()?;
                    (connection.send(&probe).await == Answer::Right).then_some(connection)
                })
            })
            .collect();
        let mut failures = 0;
        for task in opened {
            match task.await.ok().flatten() {
                Some(connection) => held.push(connection),
                None => failures += 1,
            }
        }
        if failures > 0 {
            break;
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::post;

    use super::*;
    use crate::baseline;
    use crate::cert::Cert;
    use crate::workload::Shape;

    /// Serves `app` over HTTPS in this process and runs the plain step against it for
    /// half a second on `connections` connections, paced by `pace`.
    fn run_against(app: Router, connections: usize, pace: Pace) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let cert = Cert::generate(dir.path()).unwrap();
        let server = baseline::runtime("test-server").unwrap();
        let addr = baseline::serve_https(&cert, &server, app).unwrap();
        let target = Target::new(addr, "/flow-endpoint", &cert.cert_pem).unwrap();
        let workload = Arc::new(Workload::plain(Shape::Step, "pacing"));
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = client
            .block_on(run(
                &target,
                connections,
                workload,
                pace,
                Duration::from_millis(500),
                || {},
            ))
            .unwrap();
        server.shutdown_background();
        outcome
    }

    fn answering_after(delay: Duration) -> Router {
        Router::new().route(
            "/flow-endpoint",
            post(move || async move {
                tokio::time::sleep(delay).await;
                "{}"
            }),
        )
    }

    #[test]
    fn a_paced_run_tells_its_own_lateness_from_a_backlog() {
        // Answered at once, 100 a second on four connections: a connection is always
        // free before the next request is due, so each is sent by the generator's timer.
        let on_time = run_against(answering_after(Duration::ZERO), 4, Pace::Rate(100.0));
        assert!(on_time.requests >= 40, "{} requests", on_time.requests);
        assert_eq!(
            on_time.late_us.len() as u64 + on_time.behind,
            on_time.requests
        );
        // The first is due at once; a busy test machine may hold up a few more.
        assert!(
            on_time.behind * 4 <= on_time.requests,
            "{} behind",
            on_time.behind
        );
        // The timer fires at its next tick at or after the scheduled time, so requests
        // go out measurably late.
        let latest = on_time.late_us.last().expect("requests scheduled ahead");
        assert!(*latest > 0, "no request sent late");

        // Answered after 50 ms, 1,000 a second asked on two connections: every request
        // but the first few is due before a connection is free, and none is counted late.
        let backlog = run_against(
            answering_after(Duration::from_millis(50)),
            2,
            Pace::Rate(1000.0),
        );
        assert!(backlog.requests >= 10, "{} requests", backlog.requests);
        assert_eq!(
            backlog.late_us.len() as u64 + backlog.behind,
            backlog.requests
        );
        assert!(backlog.late_us.len() <= 2, "{} late", backlog.late_us.len());

        // Closed loop: nothing is scheduled, so there is no lateness to tell.
        let closed = run_against(answering_after(Duration::ZERO), 2, Pace::ClosedLoop);
        assert!(closed.requests > 0);
        assert_eq!((closed.late_us.len(), closed.behind), (0, 0));
        assert_eq!(closed.late_ms(0.5), None);
    }
}
