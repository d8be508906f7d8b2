//! The retry policy: a [`tower::retry::Policy`] over [`Attempt`]s, so that
//! [`tower::retry::Retry`] runs the loop and this file only says when.
//!
//! Retried (see [`Failure`]): a call that could not connect, `UNAVAILABLE`, and a call
//! whose connection broke before the answer. A retry is the same call with the same
//! idempotency key, its `attempt` one higher, and the replica that failed added to
//! [`Attempt::tried`] so the balancer goes elsewhere. Never retried: any answer, a
//! timeout, no replica at all, a fourth attempt, a retry whose backoff would end past
//! the deadline, or one the budget cannot pay for.
//!
//! Retries are at the typed-message level because an HTTP request body cannot be cloned;
//! an [`Attempt`] can, cheaply: it shares its call.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use super::classify::Failure;
use super::{Attempt, CallError, Reply};

/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// Backoff before a retry: full jitter over an exponential base, capped.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// When to retry; cheap to clone (tower's `Retry` clones it for every call), with
/// one budget shared by all clones.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    budget: Arc<TpsBudget>,
}

impl RetryPolicy {
    /// At least 10 retries a second, and beyond that 20 % of calls.
    pub fn new() -> Self {
        Self::with_budget(TpsBudget::new(Duration::from_secs(10), 10, 0.2))
    }

    pub fn with_budget(budget: TpsBudget) -> Self {
        Self {
            budget: Arc::new(budget),
        }
    }
}

#[cfg(test)]
impl RetryPolicy {
    /// Whether both draw on one budget.
    pub(super) fn shares_budget_with(&self, other: &RetryPolicy) -> bool {
        Arc::ptr_eq(&self.budget, &other.budget)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy<Attempt, Reply, CallError> for RetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        attempt: &mut Attempt,
        result: &mut Result<Reply, CallError>,
    ) -> Option<Sleep> {
        let Err(CallError::Status {
            status,
            failure,
            replica,
        }) = result
        else {
            return None;
        };
        tracing::debug!(%replica, attempt = attempt.number, code = ?status.code(), ?failure, "call failed");
        if *failure == Failure::Final || attempt.number >= MAX_ATTEMPTS {
            return None;
        }
        let backoff = backoff(attempt.number);
        if Instant::now() + backoff >= attempt.deadline || !self.budget.withdraw() {
            return None;
        }
        attempt.tried.push(*replica);
        attempt.number += 1;
        // The copy kept for this retry shares the call with the attempt that failed, which
        // may still hold it: the number goes on a copy of its own then.
        Arc::make_mut(&mut attempt.call).set_attempt(attempt.number);
        crate::telemetry::retry(attempt.call.method());
        Some(tokio::time::sleep(backoff))
    }

    fn clone_request(&mut self, attempt: &Attempt) -> Option<Attempt> {
        // Called once per attempt, before it is sent: the first one pays into the
        // budget, and the last one needs no copy.
        if attempt.number == 1 {
            self.budget.deposit();
        }
        (attempt.number < MAX_ATTEMPTS).then(|| attempt.clone())
    }
}

/// Full jitter over `BACKOFF_BASE · 2^(attempt-1)`, capped at `BACKOFF_MAX`.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << (attempt - 1).min(10))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use flowgate_proto::v1::{InitRequest, RequestContext};
    use tonic::Status;
    use tower::retry::Retry;
    use tower::{Service, ServiceExt};

    use super::*;
    use crate::translate::Call;
    use crate::upstream::classify::classify;

    /// What the test double saw of one attempt.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        number: u32,
        /// The attempt number in the request context, as the flow service sees it.
        context_attempt: u32,
        key: String,
        tried: Vec<SocketAddr>,
        at: Duration,
    }

    /// A flow service that answers attempt `n` with the `n`-th scripted result (the
    /// last one repeated), from replica `127.0.0.1:n`, after `takes`.
    #[derive(Clone)]
    struct Script {
        results: Arc<Mutex<VecDeque<Result<Reply, CallError>>>>,
        seen: Arc<Mutex<Vec<Seen>>>,
        takes: Duration,
        start: Instant,
    }

    fn replica(n: u32) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n as u16))
    }

    /// A status failure from replica `n`, classified as the transport would.
    fn failed(n: u32, status: Status) -> Result<Reply, CallError> {
        Err(CallError::Status {
            failure: classify(&status),
            status,
            replica: replica(n),
        })
    }

    fn not_connected(n: u32) -> Result<Reply, CallError> {
        Err(CallError::Status {
            status: Status::unavailable("connection refused"),
            failure: Failure::NotConnected,
            replica: replica(n),
        })
    }

    fn broken(n: u32) -> Result<Reply, CallError> {
        Err(CallError::Status {
            status: Status::unknown("connection reset"),
            failure: Failure::Retryable,
            replica: replica(n),
        })
    }

    impl Script {
        fn new(results: Vec<Result<Reply, CallError>>, takes: Duration) -> Self {
            Self {
                results: Arc::new(Mutex::new(results.into())),
                seen: Arc::default(),
                takes,
                start: Instant::now(),
            }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Service<Attempt> for Script {
        type Response = Reply;
        type Error = CallError;
        type Future = Pin<Box<dyn Future<Output = Result<Reply, CallError>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, attempt: Attempt) -> Self::Future {
            let context = context(&attempt.call).clone();
            self.seen.lock().unwrap().push(Seen {
                number: attempt.number,
                context_attempt: context.attempt,
                key: context.idempotency_key,
                tried: attempt.tried.clone(),
                at: self.start.elapsed(),
            });
            let mut results = self.results.lock().unwrap();
            let result = if results.len() > 1 {
                results.pop_front().unwrap()
            } else {
                match results.front().unwrap() {
                    Ok(_) => Ok(Reply::Acknowledged),
                    Err(CallError::Status {
                        status, failure, ..
                    }) => Err(CallError::Status {
                        status: Status::new(status.code(), status.message()),
                        failure: *failure,
                        replica: replica(attempt.number),
                    }),
                    Err(CallError::Timeout) => Err(CallError::Timeout),
                    Err(CallError::NoReplica) => Err(CallError::NoReplica),
                }
            };
            let takes = self.takes;
            Box::pin(async move {
                tokio::time::sleep(takes).await;
                result
            })
        }
    }

    fn call() -> Call {
        Call::Init(InitRequest {
            context: Some(RequestContext {
                idempotency_key: "key-1".into(),
                attempt: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Runs one call under the default policy, due `within` from now.
    async fn run(script: &Script, within: Duration) -> Result<Reply, CallError> {
        run_with(RetryPolicy::new(), script, within).await
    }

    async fn run_with(
        policy: RetryPolicy,
        script: &Script,
        within: Duration,
    ) -> Result<Reply, CallError> {
        let attempt = Attempt::first(call(), Instant::now() + within);
        Retry::new(policy, script.clone()).oneshot(attempt).await
    }

    #[tokio::test(start_paused = true)]
    async fn each_retryable_failure_is_retried_with_the_same_key_on_another_replica() {
        let script = Script::new(
            vec![
                not_connected(1),
                failed(2, Status::unavailable("draining")),
                Ok(Reply::Acknowledged),
            ],
            Duration::ZERO,
        );
        assert!(matches!(
            run(&script, Duration::from_secs(1)).await,
            Ok(Reply::Acknowledged)
        ));
        let seen = script.seen();
        assert_eq!(
            seen.iter()
                .map(|s| (s.number, s.context_attempt, s.key.as_str(), s.tried.clone()))
                .collect::<Vec<_>>(),
            [
                (1, 1, "key-1", vec![]),
                (2, 2, "key-1", vec![replica(1)]),
                (3, 3, "key-1", vec![replica(1), replica(2)]),
            ]
        );
        // Full jitter under 10 ms, then under 20 ms.
        assert!(seen[1].at <= Duration::from_millis(10), "{seen:?}");
        assert!(
            seen[2].at - seen[1].at <= Duration::from_millis(20),
            "{seen:?}"
        );

        // A connection broken before the answer is retried too.
        let script = Script::new(vec![broken(1), Ok(Reply::Acknowledged)], Duration::ZERO);
        assert!(run(&script, Duration::from_secs(1)).await.is_ok());
        assert_eq!(script.seen().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_and_timeouts_are_never_retried() {
        let finals = [
            failed(1, Status::invalid_argument("bad")),
            failed(1, Status::not_found("no such flow")),
            failed(1, Status::resource_exhausted("busy")),
            failed(1, Status::internal("bug")),
            failed(1, Status::deadline_exceeded("late")),
            Err(CallError::Timeout),
            Err(CallError::NoReplica),
        ];
        for result in finals {
            let label = format!("{result:?}");
            let script = Script::new(vec![result], Duration::ZERO);
            assert!(run(&script, Duration::from_secs(1)).await.is_err());
            assert_eq!(script.seen().len(), 1, "{label}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_three_attempts() {
        let script = Script::new(
            vec![failed(1, Status::unavailable("refusing"))],
            Duration::ZERO,
        );
        let result = run(&script, Duration::from_secs(1)).await;
        assert!(
            matches!(&result, Err(CallError::Status { replica: last, .. }) if *last == replica(3)),
            "{result:?}"
        );
        let numbers: Vec<u32> = script.seen().iter().map(|s| s.number).collect();
        assert_eq!(numbers, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_would_end_past_the_deadline() {
        // Each attempt takes 300 ms: within 1 s there is room for three.
        let refusing = || vec![failed(1, Status::unavailable("refusing"))];
        let script = Script::new(refusing(), Duration::from_millis(300));
        assert!(run(&script, Duration::from_secs(1)).await.is_err());
        assert_eq!(script.seen().len(), 3);
        // Within 500 ms there is room to start a second, never a third.
        let script = Script::new(refusing(), Duration::from_millis(300));
        assert!(run(&script, Duration::from_millis(500)).await.is_err());
        assert_eq!(script.seen().len(), 2);
        // Once the deadline has passed, nothing is retried.
        let script = Script::new(refusing(), Duration::from_millis(300));
        assert!(run(&script, Duration::from_millis(250)).await.is_err());
        assert_eq!(script.seen().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_the_budget_is_spent() {
        // No share of calls, and a reserve of one retry per second.
        let policy = RetryPolicy::with_budget(TpsBudget::new(Duration::from_secs(1), 1, 0.0));
        let script = Script::new(
            vec![failed(1, Status::unavailable("refusing"))],
            Duration::ZERO,
        );
        assert!(
            run_with(policy.clone(), &script, Duration::from_secs(1))
                .await
                .is_err()
        );
        assert_eq!(script.seen().len(), 2, "the reserve pays for one retry");
        let script = Script::new(
            vec![failed(1, Status::unavailable("refusing"))],
            Duration::ZERO,
        );
        assert!(
            run_with(policy.clone(), &script, Duration::from_secs(1))
                .await
                .is_err()
        );
        assert_eq!(script.seen().len(), 1, "the budget is spent");

        // The default budget pays for 20 % of calls beyond its reserve: a steady
        // stream of calls that all fail keeps getting retries.
        let policy = RetryPolicy::new();
        let mut attempts = 0;
        for _ in 0..200 {
            let script = Script::new(
                vec![failed(1, Status::unavailable("refusing"))],
                Duration::ZERO,
            );
            let _ = run_with(policy.clone(), &script, Duration::from_secs(1)).await;
            attempts += script.seen().len();
        }
        // 200 first attempts, and retries from the reserve (100) and 20 % of 200 (40):
        // far fewer than the 400 that unbudgeted retries would add.
        assert!((200 + 130..=200 + 140).contains(&attempts), "{attempts}");
    }

    /// The request context of a test's `Init` call.
    fn context(call: &Call) -> &RequestContext {
        let Call::Init(request) = call else {
            unreachable!()
        };
        request.context.as_ref().unwrap()
    }

    fn context_attempt(call: &Call) -> u32 {
        context(call).attempt
    }

    #[tokio::test(start_paused = true)]
    async fn the_kept_copy_shares_the_call_and_a_retry_numbers_its_own() {
        let mut policy = RetryPolicy::new();
        let sent = Attempt::first(call(), Instant::now() + Duration::from_secs(1));
        let mut kept = policy.clone_request(&sent).unwrap();
        // Keeping a copy of the attempt copies none of its message.
        assert!(Arc::ptr_eq(&kept.call, &sent.call));

        // The attempt sent still holds the call when it fails and the retry is numbered.
        assert!(policy.retry(&mut kept, &mut not_connected(1)).is_some());
        assert_eq!((kept.number, context_attempt(&kept.call)), (2, 2));
        assert_eq!((sent.number, context_attempt(&sent.call)), (1, 1));
        assert!(!Arc::ptr_eq(&kept.call, &sent.call));

        // A call nothing else holds is numbered in place, and the last attempt is not
        // copied at all.
        let before = Arc::as_ptr(&kept.call);
        assert!(policy.retry(&mut kept, &mut not_connected(2)).is_some());
        assert_eq!(context_attempt(&kept.call), 3);
        assert_eq!(Arc::as_ptr(&kept.call), before);
        assert!(policy.clone_request(&kept).is_none());
    }

    #[test]
    fn backoff_stays_within_its_cap() {
        for attempt in 1..20 {
            assert!(backoff(attempt) <= BACKOFF_MAX);
        }
        assert!(backoff(1) <= BACKOFF_BASE);
    }
}
