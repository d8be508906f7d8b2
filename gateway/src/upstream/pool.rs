//! The replicas of one flow service: which addresses exist (static, or re-resolved
//! from DNS names), which are serving (a `grpc.health.v1` Watch stream per replica),
//! and which to call next (power of two choices on in-flight calls).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flowgate_proto::v1::flow_service_client::FlowServiceClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A refused or unroutable connection must fail fast, well inside any deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings notice half-open connections that TCP alone would not.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait before watching a replica's health again after the stream broke.
const WATCH_RETRY_MIN: Duration = Duration::from_millis(100);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(2);

/// What is known of a replica's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// No answer yet.
    Unknown = 0,
    Serving = 1,
    /// It said NOT_SERVING (draining, or its own dependencies are down).
    NotServing = 2,
    /// The connection failed.
    Unreachable = 3,
    /// It does not implement `grpc.health.v1`: callable, but never "serving" for pings.
    NoHealthService = 4,
}

impl Health {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Health::Serving,
            2 => Health::NotServing,
            3 => Health::Unreachable,
            4 => Health::NoHealthService,
            _ => Health::Unknown,
        }
    }

    /// Whether calls may be sent there.
    pub fn callable(self) -> bool {
        matches!(
            self,
            Health::Unknown | Health::Serving | Health::NoHealthService
        )
    }
}

/// One replica.
#[derive(Debug)]
pub struct Replica {
    pub addr: SocketAddr,
    pub client: FlowServiceClient<Channel>,
    channel: Channel,
    health: AtomicU8,
    /// Calls in flight: the load signal for balancing.
    pending: AtomicUsize,
}

impl Replica {
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    fn set_health(&self, health: Health, changed: &watch::Sender<u64>) {
        let old = self.health.swap(health as u8, Ordering::Relaxed);
        if old != health as u8 {
            tracing::info!(replica = %self.addr, ?health, "replica health");
            changed.send_modify(|n| *n += 1);
        }
    }

    /// Marks the replica unreachable after a call failed to connect; the health watch
    /// will mark it serving again once it answers.
    pub fn mark_unreachable(&self, changed: &watch::Sender<u64>) {
        // A replica without a health service has no watch to bring it back soon; a
        // failed connect there says nothing lasting, so it stays callable.
        if self.health() != Health::NoHealthService {
            self.set_health(Health::Unreachable, changed);
        }
    }

    /// Counts a call in flight until the guard drops.
    pub fn start_call(self: &Arc<Self>) -> PendingGuard {
        self.pending.fetch_add(1, Ordering::Relaxed);
        PendingGuard(self.clone())
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// Decrements a replica's in-flight count when dropped.
#[derive(Debug)]
pub struct PendingGuard(Arc<Replica>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where replicas come from: an address, or a DNS name re-resolved periodically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

/// Resolves a host name to addresses; the system resolver unless a test brings its own.
pub type Resolver = Arc<
    dyn Fn(
            String,
            u16,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>,
        > + Send
        + Sync,
>;

/// The system resolver (`getaddrinfo` through Tokio).
pub fn system_resolver() -> Resolver {
    Arc::new(|host, port| {
        Box::pin(async move {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(Iterator::collect)
        })
    })
}

/// The replicas of one flow service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    replicas: RwLock<Vec<Arc<Replica>>>,
    /// Health watch tasks by replica address.
    watchers: std::sync::Mutex<HashMap<SocketAddr, JoinHandle<()>>>,
    /// Bumped whenever the set of replicas or a health changes.
    changed: watch::Sender<u64>,
    refresher: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
        if let Ok(watchers) = self.watchers.get_mut() {
            watchers.drain().for_each(|(_, task)| task.abort());
        }
    }
}

impl Pool {
    /// Starts with the static addresses and a first resolution of the names, then
    /// re-resolves the names every `refresh`. Must be called inside a Tokio runtime.
    pub fn new(targets: Vec<Target>, refresh: Duration) -> Self {
        Self::with_resolver(targets, refresh, system_resolver())
    }

    /// [`Pool::new`] with a given resolver.
    pub fn with_resolver(targets: Vec<Target>, refresh: Duration, resolver: Resolver) -> Self {
        let (changed, _) = watch::channel(0);
        let pool = Pool {
            inner: Arc::new(Inner {
                replicas: RwLock::default(),
                watchers: Default::default(),
                changed,
                refresher: Default::default(),
            }),
        };
        let statics: Vec<SocketAddr> = targets
            .iter()
            .filter_map(|t| {
                if let Target::Addr(a) = t {
                    Some(*a)
                } else {
                    None
                }
            })
            .collect();
        pool.apply(statics.clone());
        let names: Vec<(String, u16)> = targets
            .into_iter()
            .filter_map(|t| {
                if let Target::Name { host, port } = t {
                    Some((host, port))
                } else {
                    None
                }
            })
            .collect();
        if !names.is_empty() {
            // A weak handle: the refresher stops when the last `Pool` goes.
            let weak = Arc::downgrade(&pool.inner);
            let task = tokio::spawn(async move {
                let mut last: HashMap<String, Vec<SocketAddr>> = HashMap::new();
                loop {
                    for (host, port) in &names {
                        match resolver(host.clone(), *port).await {
                            Ok(mut addrs) => {
                                addrs.sort();
                                addrs.dedup();
                                if addrs.is_empty() {
                                    tracing::warn!(%host, "DNS returned no address; keeping the previous set");
                                } else {
                                    last.insert(host.clone(), addrs);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(%host, error = %e, "DNS lookup failed; keeping the previous set")
                            }
                        }
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    let mut all = statics.clone();
                    all.extend(last.values().flatten().copied());
                    // Never apply an empty set: a resolver hiccup must not drop every replica.
                    if !all.is_empty() {
                        Pool { inner }.apply(all);
                    }
                    tokio::time::sleep(refresh).await;
                }
            });
            *pool.inner.refresher.lock().expect("refresher lock") = Some(task);
        }
        pool
    }

    /// Makes the replica set exactly `addrs`, keeping replicas (and their connections)
    /// that stay.
    fn apply(&self, mut addrs: Vec<SocketAddr>) {
        addrs.sort();
        addrs.dedup();
        let mut replicas = self.inner.replicas.write().expect("replicas lock");
        let mut watchers = self.inner.watchers.lock().expect("watchers lock");
        let before = replicas.len();
        replicas.retain(|r| addrs.contains(&r.addr));
        watchers.retain(|addr, task| {
            let keep = addrs.contains(addr);
            if !keep {
                tracing::info!(replica = %addr, "replica removed");
                task.abort();
            }
            keep
        });
        let mut added = false;
        for addr in addrs {
            if replicas.iter().any(|r| r.addr == addr) {
                continue;
            }
            let channel = endpoint_for(addr).connect_lazy();
            let replica = Arc::new(Replica {
                addr,
                client: FlowServiceClient::new(channel.clone()),
                channel,
                health: AtomicU8::new(Health::Unknown as u8),
                pending: AtomicUsize::new(0),
            });
            tracing::info!(replica = %addr, "replica added");
            watchers.insert(
                addr,
                tokio::spawn(watch_health(replica.clone(), self.inner.changed.clone())),
            );
            replicas.push(replica);
            added = true;
        }
        if added || replicas.len() != before {
            self.inner.changed.send_modify(|n| *n += 1);
        }
    }

    /// A snapshot of the replicas.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.inner.replicas.read().expect("replicas lock").clone()
    }

    pub fn changes(&self) -> &watch::Sender<u64> {
        &self.inner.changed
    }

    /// Picks a callable replica not in `tried`: of two chosen at random, the one with
    /// fewer calls in flight. `None` when no callable replica is left.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Replica>> {
        let replicas = self.inner.replicas.read().expect("replicas lock");
        let candidates: Vec<&Arc<Replica>> = replicas
            .iter()
            .filter(|r| r.health().callable() && !tried.contains(&r.addr))
            .collect();
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (candidates[a], candidates[b]);
                Some(if b.pending() < a.pending() {
                    b.clone()
                } else {
                    a.clone()
                })
            }
        }
    }

    /// Whether any replica reports SERVING. While every replica's health is still
    /// unknown (just started), waits up to `wait` for the first answers.
    pub async fn serving(&self, wait: Duration) -> bool {
        let mut changes = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let healths: Vec<Health> = self.replicas().iter().map(|r| r.health()).collect();
            if healths.contains(&Health::Serving) {
                return true;
            }
            if !healths.contains(&Health::Unknown) {
                return false;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

/// The connection options every replica gets.
fn endpoint_for(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
}

/// Follows a replica's `grpc.health.v1` status for the whole server (`""`) until aborted.
async fn watch_health(replica: Arc<Replica>, changed: watch::Sender<u64>) {
    let mut retry = WATCH_RETRY_MIN;
    loop {
        let mut client = HealthClient::new(replica.channel.clone());
        match client
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
        {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(update)) => {
                            retry = WATCH_RETRY_MIN;
                            let health = match update.status() {
                                ServingStatus::Serving => Health::Serving,
                                _ => Health::NotServing,
                            };
                            replica.set_health(health, &changed);
                        }
                        // The stream ended or broke: the replica went away or is restarting.
                        Ok(None) | Err(_) => {
                            replica.set_health(Health::Unreachable, &changed);
                            break;
                        }
                    }
                }
            }
            Err(status) if status.code() == Code::Unimplemented => {
                replica.set_health(Health::NoHealthService, &changed);
                // Nothing to watch; look again now and then in case it is redeployed.
                tokio::time::sleep(WATCH_RETRY_MAX * 5).await;
                continue;
            }
            Err(status) => {
                tracing::debug!(replica = %replica.addr, code = ?status.code(), "health watch failed");
                replica.set_health(Health::Unreachable, &changed);
            }
        }
        tokio::time::sleep(retry + Duration::from_millis(fastrand::u64(..50))).await;
        retry = (retry * 2).min(WATCH_RETRY_MAX);
    }
}
