//! The set-ups measured, each started fresh for each run (so peak memory belongs to
//! that run) and stopped after it: the in-process baseline, flowgate with a store of
//! its choice and any number of flow-service replicas, plain or Meta-encrypted, pywa,
//! and the gateway holding idle connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::baseline;
use crate::cert::Cert;
use crate::floor::{Bracket, Floor, Meter};
use crate::hop;
use crate::load::{self, Pace, Target};
use crate::procs::{self, Watched};
use crate::pywa;
use crate::report::{Idle, Kind, Latency, Pacing, PerRole, Run};
use crate::seal::Sealer;
use crate::servers::{Binaries, MetaKeys, Server};
use crate::workload::{Job, Shape, Workload, probe};

/// What every run shares.
#[derive(Debug)]
pub struct Bench {
    pub binaries: Binaries,
    pub cert: Cert,
    pub dir: PathBuf,
    /// The floor measured at the start, for the table's heading.
    pub floor: Floor,
    /// What measures the floor again around each run, and for how long.
    meter: Meter,
    floor_window: Duration,
    pub duration: Duration,
    pub connections: usize,
    pub meta: MetaKeys,
    pub sealer: Sealer,
    /// Tells runs' flow tokens apart when they share a PostgreSQL store.
    pub run_id: String,
    /// The round of `--rounds` being run (from 1).
    pub round: usize,
    runs_started: usize,
}

/// Where a flow service keeps its outcomes.
#[derive(Debug, Clone)]
pub enum Store {
    /// A fresh SQLite file in the temporary directory.
    Sqlite,
    Postgres(String),
    /// The flow service's in-process store: no database, so the gateway and the
    /// service's own work are what is measured.
    Memory,
}

impl Store {
    /// The store's name in the results.
    pub fn label(&self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres(_) => "postgres",
            Store::Memory => "memory",
        }
    }

    /// The flow service's `FLOW_SERVICE_DATABASE_URL` for `run`.
    fn url(&self, dir: &Path, run: &str) -> String {
        match self {
            Store::Sqlite => format!("sqlite://{}", dir.join(format!("{run}.db")).display()),
            Store::Postgres(url) => url.clone(),
            Store::Memory => "memory:".into(),
        }
    }
}

/// What a process set is, for the per-role figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Gateway,
    FlowService,
    /// pywa's processes, or the baseline's threads: the whole server.
    Whole,
}

const READY_WAIT: Duration = Duration::from_secs(30);

/// How many times a flowgate set-up is started before its run fails. Each server takes
/// a port this process found free and let go, so another socket can take it first.
const START_ATTEMPTS: usize = 2;

impl Bench {
    pub fn new(
        binaries: Binaries,
        dir: &Path,
        meter: Meter,
        floor_window: Duration,
        duration: Duration,
        connections: usize,
    ) -> anyhow::Result<Self> {
        eprintln!("measuring the RSA floor …");
        let floor = meter.measure(floor_window * 2)?;
        let cert = Cert::generate(dir)?;
        let meta = binaries.keygen(dir)?;
        let sealer = Sealer::new(&meta.public_pem, &meta.app_secret)?;
        let run_id = format!(
            "bench-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        );
        Ok(Self {
            binaries,
            cert,
            dir: dir.to_owned(),
            floor,
            meter,
            floor_window,
            duration,
            connections,
            meta,
            sealer,
            run_id,
            round: 1,
            runs_started: 0,
        })
    }

    /// A token prefix no earlier run used.
    fn next_run(&mut self) -> String {
        self.runs_started += 1;
        format!("{}-{}", self.run_id, self.runs_started)
    }

    /// Sealed jobs enough for `max_rate` requests a second over the window.
    pub fn seal_pool(&mut self, shape: Shape, max_rate: f64) -> Arc<Vec<Job>> {
        let steps = match shape {
            Shape::Step => 1.0,
            Shape::Journey => 3.0,
        };
        let jobs = (max_rate * self.duration.as_secs_f64() / steps).ceil() as usize;
        let started = Instant::now();
        let run = self.next_run();
        let pool = crate::workload::seal_pool(shape, &run, &self.sealer, jobs);
        eprintln!(
            "sealed {jobs} {} jobs in {:.1} s",
            shape.label(),
            started.elapsed().as_secs_f64()
        );
        pool
    }

    /// The in-process axum + rustls baseline, plain sign-up step.
    pub async fn baseline(&mut self) -> anyhow::Result<Run> {
        let server = baseline::start(&self.cert)?;
        let target = Target::new(server.addr, "/flow-endpoint", &self.cert.cert_pem)?;
        let run = self.next_run();
        load::wait_ready(&target, &probe(None, &run), READY_WAIT).await?;
        let watched = [(Role::Whole, Watched::Threads(baseline::THREAD_NAME))];
        let workload = Workload::plain(Shape::Step, &run);
        self.measure(
            "no-hop axum+rustls",
            Kind::Baseline,
            &target,
            workload,
            Pace::ClosedLoop,
            &watched,
        )
        .await
    }

    /// A hop baseline ([`hop`]): the no-hop front calling a bare tonic service with
    /// `kind` of client, plain sign-up step; the front counts as the gateway, the
    /// service as the flow service.
    pub async fn hop_baseline(&mut self, kind: hop::ClientKind) -> anyhow::Result<Run> {
        let server = hop::start(&self.cert, kind)?;
        let target = Target::new(server.addr, "/flow-endpoint", &self.cert.cert_pem)?;
        let run = self.next_run();
        load::wait_ready(&target, &probe(None, &run), READY_WAIT).await?;
        let watched = [
            (Role::Gateway, Watched::Threads(hop::FRONT_THREADS)),
            (Role::FlowService, Watched::Threads(hop::SERVICE_THREADS)),
        ];
        let workload = Workload::plain(Shape::Step, &run);
        self.measure(
            match kind {
                hop::ClientKind::Tonic => "bare gRPC hop, tonic client",
                hop::ClientKind::H2 => "bare gRPC hop, h2 client",
            },
            Kind::Hop,
            &target,
            workload,
            Pace::ClosedLoop,
            &watched,
        )
        .await
    }

    /// flowgate: `replicas` flow services on `store` behind one gateway, plain JSON, or
    /// Meta-encrypted with jobs from `sealed`.
    pub async fn flowgate(
        &mut self,
        name: &str,
        store: &Store,
        replicas: usize,
        shape: Shape,
        sealed: Option<Arc<Vec<Job>>>,
        pace: Pace,
    ) -> anyhow::Result<Run> {
        let run = self.next_run();
        let meta = sealed.is_some();
        let mut attempt = 1;
        let (gateway, services, target) = loop {
            match self.start_flowgate(store, replicas, meta, &run).await {
                Ok(started) => break started,
                Err(error) if attempt < START_ATTEMPTS => {
                    // Reported, not hidden: a start that fails every time still fails.
                    eprintln!("starting flowgate failed; starting it again: {error:#}");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        let mut watched = vec![(Role::Gateway, gateway.watched())];
        watched.extend(services.iter().map(|s| (Role::FlowService, s.watched())));
        let workload = match sealed {
            Some(pool) => Workload::sealed(shape, pool),
            None => Workload::plain(shape, &run),
        };
        let kind = Kind::Flowgate {
            meta,
            store: store.label(),
            replicas,
        };
        self.measure(name, kind, &target, workload, pace, &watched)
            .await
    }

    /// Starts `replicas` flow services on `store` and a gateway in front of them (Meta's
    /// encrypted endpoint when `meta`), and waits until the gateway answers a probe.
    /// Fails with the log of whichever exited, or the gateway's.
    async fn start_flowgate(
        &self,
        store: &Store,
        replicas: usize,
        meta: bool,
        run: &str,
    ) -> anyhow::Result<(Server, Vec<Server>, Target)> {
        let mut services = Vec::with_capacity(replicas);
        for replica in 0..replicas {
            let url = store.url(&self.dir, run);
            services.push(self.binaries.flow_service(
                &format!("flow-service-{replica}"),
                &url,
                &self.dir,
            )?);
        }
        let meta = meta.then_some(&self.meta);
        let backends: Vec<&Server> = services.iter().collect();
        let mut gateway = self
            .binaries
            .gateway(&backends, &self.cert, meta, &self.dir)?;
        let target = Target::new(gateway.addr, "/flow-endpoint", &self.cert.cert_pem)?;
        let probe_step = probe(meta.map(|_| &self.sealer), run);
        if let Err(error) = load::wait_ready(&target, &probe_step, READY_WAIT).await {
            gateway.check_alive()?;
            for service in &mut services {
                service.check_alive()?;
            }
            return Err(error.context(gateway.log_tail()));
        }
        Ok((gateway, services, target))
    }

    /// pywa under uvicorn, the encrypted sign-up step from `sealed`.
    pub async fn pywa(
        &mut self,
        venv: &Path,
        app_dir: &Path,
        sealed: Arc<Vec<Job>>,
    ) -> anyhow::Result<Run> {
        pywa::ensure_venv(venv)?;
        let mut server = pywa::start(venv, app_dir, &self.cert, &self.meta, &self.dir)?;
        let target = Target::new(server.addr, "/flow-endpoint", &self.cert.cert_pem)?;
        let run = self.next_run();
        if let Err(error) =
            load::wait_ready(&target, &probe(Some(&self.sealer), &run), READY_WAIT).await
        {
            server.check_alive()?;
            return Err(error.context(server.log_tail()));
        }
        let watched = [(Role::Whole, server.watched())];
        let name = format!("pywa {} uvicorn×{}", pywa::VERSION, pywa::WORKERS);
        let workload = Workload::sealed(Shape::Step, sealed);
        self.measure(
            &name,
            Kind::Pywa,
            &target,
            workload,
            Pace::ClosedLoop,
            &watched,
        )
        .await
    }

    /// The gateway's resident memory idle, then holding `count` idle keep-alive TLS
    /// connections (each has answered one request), capped by this process's open-file
    /// limit.
    pub async fn idle_connections(
        &mut self,
        store: &Store,
        count: usize,
    ) -> anyhow::Result<(Idle, Option<String>)> {
        let run = self.next_run();
        let url = store.url(&self.dir, &run);
        let service = self
            .binaries
            .flow_service("flow-service-idle", &url, &self.dir)?;
        let gateway = self
            .binaries
            .gateway(&[&service], &self.cert, None, &self.dir)?;
        let target = Target::new(gateway.addr, "/flow-endpoint", &self.cert.cert_pem)?;
        let probe_step = probe(None, &run);
        load::wait_ready(&target, &probe_step, READY_WAIT).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = || gateway.watched().rss_kib().unwrap_or(0);
        let idle_kib = rss();

        // Each connection is a socket here too; leave room for everything else.
        let limit = procs::open_file_limit().unwrap_or(1024) as usize;
        let possible = limit.saturating_sub(200);
        let note = (possible < count).then(|| {
            format!(
                "idle connections capped at {possible} by this process's open-file limit \
                 ({limit}); raise it with `ulimit -n`"
            )
        });
        let held = load::hold_idle(&target, count.min(possible), &probe_step).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let holding_kib = rss();
        let idle = Idle {
            gateway_rss_idle_kib: idle_kib,
            connections_requested: count,
            connections_held: held.len(),
            gateway_rss_holding_kib: holding_kib,
            kib_per_connection: holding_kib.saturating_sub(idle_kib) as f64
                / held.len().max(1) as f64,
        };
        drop(held);
        Ok((idle, note))
    }

    /// The floor now, in µs: measured on this thread while the servers wait (the load
    /// generator's tasks are not running yet, or have finished).
    fn floor_now(&self) -> anyhow::Result<f64> {
        let floor = tokio::task::block_in_place(|| self.meter.measure(self.floor_window))?;
        Ok(floor.rsa_decrypt_us)
    }

    /// Runs the workload, bracketed by the floor, and turns what was measured into a
    /// [`Run`].
    async fn measure(
        &self,
        name: &str,
        kind: Kind,
        target: &Target,
        workload: Workload,
        pace: Pace,
        watched: &[(Role, Watched)],
    ) -> anyhow::Result<Run> {
        eprintln!("running {name} ({}) …", workload.shape().label());
        let workload = Arc::new(workload);
        let floor_before = self.floor_now()?;
        let mut before = Vec::new();
        let outcome = load::run(
            target,
            self.connections,
            workload.clone(),
            pace,
            self.duration,
            || before = watched.iter().map(|(_, w)| w.cpu()).collect(),
        )
        .await?;
        // The servers' CPU up to the end of the window, before the floor is measured.
        let after: Vec<Duration> = watched.iter().map(|(_, w)| w.cpu()).collect();
        let floor = Bracket {
            before_us: floor_before,
            after_us: self.floor_now()?,
        };
        let requests = outcome.requests.max(1) as f64;
        let per_request = |role: Role| -> Option<f64> {
            let used: Duration = watched
                .iter()
                .zip(before.iter().zip(&after))
                .filter(|((r, _), _)| *r == role)
                .map(|(_, (start, end))| end.saturating_sub(*start))
                .sum();
            let present = watched.iter().any(|(r, _)| *r == role);
            present.then(|| used.as_secs_f64() * 1e6 / requests)
        };
        let peak = |role: Role| -> Option<u64> {
            let mut found = watched.iter().filter(|(r, _)| *r == role).peekable();
            found.peek()?;
            found.map(|(_, w)| w.peak_rss_kib()).sum()
        };
        let (gateway, flow_service, whole) = (
            per_request(Role::Gateway),
            per_request(Role::FlowService),
            per_request(Role::Whole),
        );
        let total = whole.unwrap_or(0.0) + gateway.unwrap_or(0.0) + flow_service.unwrap_or(0.0);
        let (peak_gateway, peak_service, peak_whole) = (
            peak(Role::Gateway),
            peak(Role::FlowService),
            peak(Role::Whole),
        );
        Ok(Run {
            name: name.to_owned(),
            round: self.round,
            kind,
            workload: workload.shape(),
            target_rate: match pace {
                Pace::Rate(rate) => Some(rate),
                Pace::ClosedLoop => None,
            },
            // Set by the caller, which knows what the rate was taken from.
            rate_of: None,
            requests: outcome.requests,
            requests_per_second: outcome.per_second(),
            jobs_per_second: outcome.jobs as f64 / outcome.elapsed.as_secs_f64(),
            latency_ms: Latency {
                p50: outcome.latency_ms(0.50),
                p99: outcome.latency_ms(0.99),
            },
            pacing: match pace {
                Pace::Rate(_) => Some(Pacing {
                    late_ms: outcome.late_latency(),
                    behind_share: outcome.behind as f64 / outcome.requests.max(1) as f64,
                }),
                Pace::ClosedLoop => None,
            },
            cpu_us_per_request: PerRole {
                gateway,
                flow_service,
                total: Some(total),
            },
            floor_us: floor,
            cpu_to_rsa_floor: total / floor.mean_us(),
            peak_rss_kib: PerRole {
                gateway: peak_gateway,
                flow_service: peak_service,
                total: match (peak_gateway, peak_service) {
                    (Some(g), Some(s)) => Some(g + s),
                    _ => peak_whole,
                },
            },
            non_2xx: outcome.non_success,
            wrong_answers: outcome.wrong,
            failed_connections: outcome.failed,
            pool_exhausted: workload.exhausted(),
        })
    }
}
