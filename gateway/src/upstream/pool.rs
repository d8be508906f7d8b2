//! The replicas of one flow service, the health filter over discovery: [`Pool`]
//! follows a stream of [`Change`]s (the resolver's, [`resolve`]), keeps one
//! [`Replica`] per address with its lazy connection and calls in flight, and follows
//! each replica's health over a `grpc.health.v1` Watch stream. Only replicas whose
//! [`Health`] is callable are offered to the balancer ([`super::balance`]); readiness
//! and pings ask [`Pool::serving`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::discover::Change;

use super::hop::Auth;
use super::resolve::{ClientTls, Discovered, resolve};
pub use super::resolve::{Resolver, Target, system_resolver};
use super::transport::{Connection, Dial};

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

/// A replica's client: every call carries the bearer token, when there is one. Untyped:
/// `client::Grpc` says what each call sends and answers.
pub type Client = tonic::client::Grpc<InterceptedService<Connection, Auth>>;

/// One replica.
#[derive(Debug)]
pub struct Replica {
    pub addr: SocketAddr,
    pub client: Client,
    /// The connection the client and the health watch share.
    connection: Connection,
    health: AtomicU8,
    /// Calls in flight: the load signal for balancing.
    pending: AtomicUsize,
}

impl Replica {
    fn new(dial: Dial, auth: Auth) -> Self {
        let addr = dial.addr;
        let connection = Connection::lazy(dial);
        Replica {
            addr,
            client: tonic::client::Grpc::with_origin(
                InterceptedService::new(connection.clone(), auth),
                connection.origin(),
            ),
            connection,
            health: AtomicU8::new(Health::Unknown as u8),
            pending: AtomicUsize::new(0),
        }
    }

    /// A replica that nothing watches, for tests of choosing among replicas.
    #[cfg(test)]
    pub(super) fn for_test(addr: SocketAddr) -> Self {
        Self::new(Dial { addr, tls: None }, Auth::default())
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    pub(super) fn set_health(&self, health: Health, changed: &watch::Sender<u64>) {
        let old = self.health.swap(health as u8, Ordering::Relaxed);
        if old != health as u8 {
            tracing::info!(replica = %self.addr, ?health, thread = thread(), "replica health");
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
    /// The token every replica's calls carry.
    auth: Auth,
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
    /// Follows the replicas of `targets` (see [`resolve`]): the static addresses at
    /// once, the names resolved now and every `refresh`. Must be called inside a
    /// Tokio runtime.
    pub fn new(targets: Vec<Target>, refresh: Duration) -> Self {
        Self::with_resolver(targets, refresh, system_resolver())
    }

    /// [`Pool::new`] with a given resolver.
    pub fn with_resolver(targets: Vec<Target>, refresh: Duration, resolver: Resolver) -> Self {
        Self::with_hop(targets, None, refresh, resolver, Auth::default())
    }

    /// [`Pool::with_resolver`] over TLS when `tls` is given, every call carrying `auth`.
    pub fn with_hop(
        targets: Vec<Target>,
        tls: Option<ClientTls>,
        refresh: Duration,
        resolver: Resolver,
        auth: Auth,
    ) -> Self {
        Self::from_discovery(resolve(targets, refresh, resolver, tls), auth)
    }

    /// Follows any discovery stream; every replica's calls carry `auth`. The changes
    /// ready at once (static addresses) are applied before this returns, so the first
    /// call finds them; a task applies the rest as they come.
    pub fn from_discovery<D>(discovery: D, auth: Auth) -> Self
    where
        D: Stream<Item = Result<Discovered, Infallible>> + Send + 'static,
    {
        let (changed, _) = watch::channel(0);
        let pool = Pool {
            inner: Arc::new(Inner {
                replicas: RwLock::default(),
                watchers: Default::default(),
                changed,
                refresher: Default::default(),
                auth,
            }),
        };
        let mut discovery = Box::pin(discovery);
        loop {
            match discovery.next().now_or_never() {
                Some(Some(Ok(change))) => pool.apply(change),
                Some(None) => return pool,
                None => break,
            }
        }
        // A weak handle: the task stops when the last `Pool` goes.
        let weak = Arc::downgrade(&pool.inner);
        let task = tokio::spawn(async move {
            while let Some(Ok(change)) = discovery.next().await {
                let Some(inner) = weak.upgrade() else { return };
                Pool { inner }.apply(change);
            }
        });
        *pool.inner.refresher.lock().expect("refresher lock") = Some(task);
        pool
    }

    /// Adds a replica (connecting lazily, and watching its health) or removes one
    /// (closing its connection once calls in flight end).
    fn apply(&self, change: Discovered) {
        let mut replicas = self.inner.replicas.write().expect("replicas lock");
        let mut watchers = self.inner.watchers.lock().expect("watchers lock");
        match change {
            Change::Remove(addr) => {
                replicas.retain(|r| r.addr != addr);
                if let Some(task) = watchers.remove(&addr) {
                    task.abort();
                }
                tracing::info!(replica = %addr, thread = thread(), "replica removed");
            }
            Change::Insert(addr, _) if replicas.iter().any(|r| r.addr == addr) => return,
            Change::Insert(_, dial) => {
                let addr = dial.addr;
                let replica = Arc::new(Replica::new(dial, self.inner.auth.clone()));
                tracing::info!(replica = %addr, thread = thread(), "replica added");
                watchers.insert(
                    addr,
                    tokio::spawn(watch_health(replica.clone(), self.inner.changed.clone())),
                );
                replicas.push(replica);
            }
        }
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// A snapshot of the replicas.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.inner.replicas.read().expect("replicas lock").clone()
    }

    pub fn changes(&self) -> &watch::Sender<u64> {
        &self.inner.changed
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

/// The thread whose pool logs: each of the gateway's threads follows the replicas
/// with a pool of its own, so each logs their changes.
fn thread() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

/// Follows a replica's `grpc.health.v1` status for the whole server (`""`) until aborted.
async fn watch_health(replica: Arc<Replica>, changed: watch::Sender<u64>) {
    let mut retry = WATCH_RETRY_MIN;
    loop {
        let mut client =
            HealthClient::with_origin(replica.connection.clone(), replica.connection.origin());
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
