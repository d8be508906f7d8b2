//! Where the replicas of a flow service are: a discovery stream of
//! [`Change`]s (a [`tower::discover::Discover`]) built from the configured list of
//! addresses and DNS names, the names re-resolved every `refresh`.
//!
//! The static addresses come first and are ready at once, so a caller can take them
//! without waiting for DNS; names follow. The stream never removes the last address:
//! a resolver hiccup (an error, or an empty answer) keeps the previous set.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use rustls::pki_types::ServerName;
use tower::discover::Change;

use super::transport::Dial;

/// The TLS client configuration shared by every replica of an `https://` backend.
pub type ClientTls = Arc<rustls::ClientConfig>;

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

/// One discovered replica: its address, and how to connect to it.
pub type Discovered = Change<SocketAddr, Dial>;

/// The replicas of `targets` as a stream of changes: inserts for the static addresses
/// (ready without waiting), then, when there are names, a resolution at once and one
/// every `refresh`, each yielding what was added and removed since the last. Without
/// names the stream ends after the static addresses.
///
/// With `tls`, each replica is reached over TLS, its certificate checked for the name
/// it was found under (the IP address of a listed address).
pub fn resolve(
    targets: Vec<Target>,
    refresh: Duration,
    resolver: Resolver,
    tls: Option<ClientTls>,
) -> impl Stream<Item = Result<Discovered, Infallible>> + Send + 'static {
    let mut statics = BTreeSet::new();
    let mut names = Vec::new();
    for target in targets {
        match target {
            Target::Addr(addr) => {
                statics.insert(addr);
            }
            Target::Name { host, port } => names.push((host, port)),
        }
    }
    let state = State {
        pending: statics
            .iter()
            .filter_map(|a| insert(*a, &a.ip().to_string(), tls.as_ref()))
            .collect(),
        tls,
        known: statics.clone(),
        statics,
        names,
        last: HashMap::new(),
        resolved_once: false,
        refresh,
        resolver,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(change) = state.pending.pop_front() {
                return Some((Ok(change), state));
            }
            if state.names.is_empty() {
                return None;
            }
            if state.resolved_once {
                tokio::time::sleep(state.refresh).await;
            }
            state.resolved_once = true;
            state.resolve_names().await;
        }
    })
}

struct State {
    /// Changes found but not yet yielded.
    pending: VecDeque<Discovered>,
    /// The addresses yielded so far, net of removals.
    known: BTreeSet<SocketAddr>,
    statics: BTreeSet<SocketAddr>,
    names: Vec<(String, u16)>,
    /// The last good answer per name.
    last: HashMap<String, Vec<SocketAddr>>,
    resolved_once: bool,
    refresh: Duration,
    resolver: Resolver,
    tls: Option<ClientTls>,
}

impl State {
    /// Resolves every name and queues the difference from what is known.
    async fn resolve_names(&mut self) {
        for (host, port) in &self.names {
            match (self.resolver)(host.clone(), *port).await {
                Ok(addrs) if addrs.is_empty() => {
                    tracing::warn!(%host, "DNS returned no address; keeping the previous set");
                }
                Ok(addrs) => {
                    self.last.insert(host.clone(), addrs);
                }
                Err(e) => {
                    tracing::warn!(%host, error = %e, "DNS lookup failed; keeping the previous set");
                }
            }
        }
        let mut wanted = self.statics.clone();
        wanted.extend(self.last.values().flatten().copied());
        // Never apply an empty set: a resolver hiccup must not drop every replica.
        if wanted.is_empty() {
            return;
        }
        for gone in self.known.difference(&wanted) {
            self.pending.push_back(Change::Remove(*gone));
        }
        for new in wanted.difference(&self.known) {
            // The name a replica's certificate must carry: the one it was found under.
            let domain = match self.statics.contains(new) {
                true => new.ip().to_string(),
                false => self
                    .last
                    .iter()
                    .find(|(_, addrs)| addrs.contains(new))
                    .map_or_else(|| new.ip().to_string(), |(host, _)| host.clone()),
            };
            self.pending
                .extend(insert(*new, &domain, self.tls.as_ref()));
        }
        self.known = wanted;
    }
}

/// A new replica, unless `domain` cannot be a certificate's name (logged).
fn insert(addr: SocketAddr, domain: &str, tls: Option<&ClientTls>) -> Option<Discovered> {
    match dial_for(addr, domain, tls) {
        Ok(dial) => Some(Change::Insert(addr, dial)),
        Err(error) => {
            tracing::error!(replica = %addr, %domain, %error, "cannot set up TLS towards the replica");
            None
        }
    }
}

/// How to reach a replica: over TLS with `tls`, its certificate checked for `domain`.
fn dial_for(
    addr: SocketAddr,
    domain: &str,
    tls: Option<&ClientTls>,
) -> Result<Dial, rustls::pki_types::InvalidDnsNameError> {
    let tls = match tls {
        Some(config) => Some((config.clone(), ServerName::try_from(domain.to_owned())?)),
        None => None,
    };
    Ok(Dial { addr, tls })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Mutex;

    fn change(c: &Discovered) -> (char, SocketAddr) {
        match c {
            Change::Insert(a, _) => ('+', *a),
            Change::Remove(a) => ('-', *a),
        }
    }

    async fn next(
        stream: &mut (impl Stream<Item = Result<Discovered, Infallible>> + Unpin),
    ) -> (char, SocketAddr) {
        change(&stream.next().await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn statics_come_at_once_and_the_stream_ends_without_names() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let stream = resolve(
            vec![Target::Addr(b), Target::Addr(a), Target::Addr(a)],
            Duration::from_secs(1),
            system_resolver(),
            None,
        );
        let changes: Vec<_> = stream.map(|c| change(&c.unwrap())).collect().await;
        assert_eq!(changes, [('+', a), ('+', b)]);
    }

    #[tokio::test(start_paused = true)]
    async fn names_are_re_resolved_and_hiccups_keep_the_last_set() {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let answer: Arc<Mutex<std::io::Result<Vec<SocketAddr>>>> =
            Arc::new(Mutex::new(Ok(vec![addr(1)])));
        let shared = answer.clone();
        let resolver: Resolver = Arc::new(move |host, port| {
            assert_eq!((host.as_str(), port), ("flows.test", 7));
            let result = match &*shared.lock().unwrap() {
                Ok(a) => Ok(a.clone()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            Box::pin(async move { result })
        });
        let refresh = Duration::from_secs(5);
        let targets = vec![Target::Name {
            host: "flows.test".into(),
            port: 7,
        }];
        let mut stream = Box::pin(resolve(targets, refresh, resolver, None));
        assert_eq!(next(&mut stream).await, ('+', addr(1)));

        *answer.lock().unwrap() = Ok(vec![addr(2), addr(3)]);
        let started = tokio::time::Instant::now();
        assert_eq!(next(&mut stream).await, ('-', addr(1)));
        assert_eq!(started.elapsed(), refresh);
        assert_eq!(next(&mut stream).await, ('+', addr(2)));
        assert_eq!(next(&mut stream).await, ('+', addr(3)));

        // Neither an empty answer nor an error changes anything; the next real one does.
        *answer.lock().unwrap() = Ok(vec![]);
        let polled = tokio::time::timeout(refresh * 2, stream.next()).await;
        assert!(polled.is_err(), "no change on an empty answer");
        *answer.lock().unwrap() = Err(std::io::Error::other("resolver down"));
        let polled = tokio::time::timeout(refresh * 2, stream.next()).await;
        assert!(polled.is_err(), "no change on a failed lookup");
        *answer.lock().unwrap() = Ok(vec![addr(3)]);
        assert_eq!(next(&mut stream).await, ('-', addr(2)));
    }
}
