//! The balancer: a tower [`Service`] over [`Attempt`]s that picks a replica of the
//! [`Pool`] by power of two choices on calls in flight, and sends the attempt down
//! that replica's stack ([`super::client::stack`]).
//!
//! Why not `tower::balance::p2c::Balance` over a `tower::discover` stream: it picks
//! its replica in `poll_ready`, before it sees the request, so it cannot honour the
//! rule that *a retry goes to another replica when there is one* (the request carries
//! [`Attempt::tried`]; this balancer reads it). It also needs `&mut self` to pick,
//! which would put a `Buffer` (a channel hop and a worker task) in front of every call
//! to share it between requests, and it drops a replica only when discovery removes
//! it, where here health changes by the millisecond. This balancer shares the pool
//! and is cloned per call instead; its load signal is the same as tower's
//! `PendingRequests`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::net::SocketAddr;
use tower::{Service, ServiceExt};

use super::classify::Failure;
use super::pool::{Pool, Replica};
use super::{Attempt, CallError, Reply};

/// Power of two choices over the callable replicas of a pool; cheap to clone.
#[derive(Debug, Clone)]
pub struct Balance {
    pool: Pool,
}

impl Balance {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl Service<Attempt> for Balance {
    type Response = Reply;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, CallError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        // Always ready: with no callable replica the call fails at once, since the
        // health watches would take longer to bring one back than a caller waits.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        let replicas = self.pool.replicas();
        let Some(replica) = choose(&replicas, &attempt.tried) else {
            return Box::pin(std::future::ready(Err(CallError::NoReplica)));
        };
        let pending = replica.start_call();
        let changes = self.pool.changes().clone();
        let stack = super::client::stack(&replica);
        Box::pin(async move {
            let _pending = pending;
            let result = stack.oneshot(attempt).await;
            if let Err(CallError::Status {
                failure: Failure::NotConnected,
                ..
            }) = &result
            {
                replica.mark_unreachable(&changes);
            }
            result
        })
    }
}

/// Picks a callable replica, preferring those not in `tried`: of two chosen at
/// random, the one with fewer calls in flight. `None` when none is callable.
pub fn choose(replicas: &[Arc<Replica>], tried: &[SocketAddr]) -> Option<Arc<Replica>> {
    let callable = || replicas.iter().filter(|r| r.health().callable());
    let mut candidates: Vec<&Arc<Replica>> =
        callable().filter(|r| !tried.contains(&r.addr)).collect();
    if candidates.is_empty() {
        // Every callable replica failed this call already: one of them again.
        candidates = callable().collect();
    }
    let chosen = match candidates.len() {
        0 => return None,
        1 => candidates[0],
        n => {
            let a = fastrand::usize(..n);
            let mut b = fastrand::usize(..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (candidates[a], candidates[b]);
            if b.pending() < a.pending() { b } else { a }
        }
    };
    Some(chosen.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::pool::Health;

    /// `n` replicas on addresses nothing listens on; nothing connects unless called.
    fn replicas(n: u16) -> (Vec<Arc<Replica>>, tokio::sync::watch::Sender<u64>) {
        let replicas = (1..=n)
            .map(|port| Arc::new(Replica::for_test(([127, 0, 0, 1], port).into())))
            .collect();
        (replicas, tokio::sync::watch::channel(0).0)
    }

    /// Which replica (by index) `choose` takes in `rounds` tries.
    fn counts(replicas: &[Arc<Replica>], tried: &[SocketAddr], rounds: usize) -> Vec<usize> {
        let mut counts = vec![0; replicas.len()];
        for _ in 0..rounds {
            let chosen = choose(replicas, tried).unwrap();
            counts[replicas.iter().position(|r| r.addr == chosen.addr).unwrap()] += 1;
        }
        counts
    }

    #[tokio::test]
    async fn the_less_loaded_of_two_wins() {
        let (replicas, _) = replicas(3);
        // Calls in flight: 0, 1 and 2.
        let _guards = [
            replicas[1].start_call(),
            replicas[2].start_call(),
            replicas[2].start_call(),
        ];
        let counts = counts(&replicas, &[], 300);
        // The busiest loses every pair it is drawn in; the idle one wins all of its.
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0] > counts[1], "{counts:?}");
        assert_eq!(counts[0] + counts[1], 300);
    }

    #[tokio::test]
    async fn a_retry_avoids_the_replicas_that_failed_when_it_can() {
        let (replicas, _) = replicas(3);
        // The untried replica wins even though it is the busiest.
        let _guards = [replicas[2].start_call(), replicas[2].start_call()];
        let tried = [replicas[0].addr, replicas[1].addr];
        assert_eq!(counts(&replicas, &tried, 50), [0, 0, 50]);
        // With every replica tried, any callable one will do.
        let all: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
        let chosen = counts(&replicas, &all, 300);
        assert_eq!(chosen.iter().sum::<usize>(), 300);
        assert!(chosen[0] > 0 && chosen[1] > 0, "{chosen:?}");
    }

    #[tokio::test]
    async fn replicas_that_are_not_callable_are_never_chosen() {
        let (replicas, changed) = replicas(4);
        replicas[0].set_health(Health::NotServing, &changed);
        replicas[1].set_health(Health::Unreachable, &changed);
        // Serving, or callable without a health service; both busier than the others.
        replicas[2].set_health(Health::Serving, &changed);
        replicas[3].set_health(Health::NoHealthService, &changed);
        let _guards = [replicas[2].start_call(), replicas[3].start_call()];
        let chosen = counts(&replicas, &[], 200);
        assert_eq!(&chosen[..2], [0, 0], "{chosen:?}");
        assert!(chosen[2] > 0 && chosen[3] > 0, "{chosen:?}");

        // A failed connect takes a replica out, unless nothing would watch it back.
        replicas[2].mark_unreachable(&changed);
        replicas[3].mark_unreachable(&changed);
        assert_eq!(counts(&replicas, &[], 20), [0, 0, 0, 20]);
        replicas[3].set_health(Health::NotServing, &changed);
        assert!(choose(&replicas, &[]).is_none());
    }
}
