//! What a connection's task watches besides hyper's connection, made so that serving a
//! request costs that task nothing extra:
//!
//! - [`Activity`]: the requests in flight on the connection and when the last one
//!   ended, read by the connection's timer when it fires. The timer used to be told of
//!   every request's start and end (a `watch` channel): two wake-ups of the task, two
//!   resets of its timer and four locks per request. Now a request bumps two atomics
//!   and the timer, when it fires, works out whether the connection has been idle long
//!   enough and, if not, when to look again.
//! - [`OnWake`]: a future polled only after its own waker was woken. The task's
//!   `select!` polls every branch on every wake-up of the task, and waiting on the
//!   server's phase (`watch::Receiver::wait_for`) takes the phase channel's lock, one
//!   lock shared by every connection on every thread, at each poll.
//!
//! `OnWake` is ours because no kept crate offers it alone: `FuturesUnordered` gives
//! each future its own waker in the same way, but yields outputs as a stream of many.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

/// The requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
pub(super) struct Activity {
    /// When the connection started serving; the times below count from it.
    start: Instant,
    in_flight: AtomicUsize,
    /// Whether a request has started, i.e. the first request's headers came in time.
    started: AtomicBool,
    /// Nanoseconds from `start` to the end of the latest request (0 before any).
    last_end: AtomicU64,
}

/// Whether a connection is idle, as its timer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Idle {
    /// A request is in flight.
    No,
    /// No request has started since the connection did, at `since`.
    BeforeFirst { since: Instant },
    /// Nothing in flight since the last request ended, at `since`.
    Since(Instant),
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            last_end: AtomicU64::new(0),
        })
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Release);
        }
        Active(self.clone())
    }

    /// Whether the connection is idle, and since when. The three loads are not one
    /// snapshot; that holds because a request begins only on the connection's own
    /// task (hyper calls the service inside its connection future, for HTTP/2 too), the
    /// task that reads this, and only ends elsewhere (an HTTP/2 stream's task), where
    /// the end's time is stored before the count falls.
    pub fn idle(&self) -> Idle {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Idle::No;
        }
        if !self.started.load(Ordering::Acquire) {
            return Idle::BeforeFirst { since: self.start };
        }
        Idle::Since(self.start + Duration::from_nanos(self.last_end.load(Ordering::Acquire)))
    }
}

/// One request in flight on its connection, for as long as it lives.
#[derive(Debug)]
pub(super) struct Active(Arc<Activity>);

impl Drop for Active {
    fn drop(&mut self) {
        let activity = &self.0;
        let since_start = Instant::now().saturating_duration_since(activity.start);
        let nanos = u64::try_from(since_start.as_nanos()).unwrap_or(u64::MAX);
        // The latest end wins when requests of one connection end at once (HTTP/2);
        // recorded before the count falls, so a timer that sees none in flight also
        // sees when the last one ended.
        activity.last_end.fetch_max(nanos, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Polls `inner` only when its own waker has been woken since it was last polled
/// (and the first time), however often the task it runs in is polled.
pub(super) struct OnWake<F> {
    inner: Pin<Box<F>>,
    signal: Arc<Signal>,
}

/// The waker [`OnWake`] gives its future: notes the wake-up, then wakes the task.
#[derive(Debug, Default)]
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> OnWake<F> {
    pub fn new(inner: F) -> Self {
        let signal = Signal {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        };
        Self {
            inner: Box::pin(inner),
            signal: Arc::new(signal),
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake-up between the two still wakes
        // the task, which polls again and finds the flag set.
        this.signal.task.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(this.signal.clone());
        this.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A future that counts its polls and completes once `ready` is set and it is woken.
    struct Counted {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Counted {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn the_inner_future_is_polled_first_and_then_only_after_its_wake_up() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let inner_waker = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let mut future = OnWake::new(Counted {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: inner_waker.clone(),
        });
        let task_wakes = Arc::new(CountingWaker::default());
        let task_waker = Waker::from(task_wakes.clone());
        let mut cx = Context::from_waker(&task_waker);
        let mut future = Pin::new(&mut future);

        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the first poll reaches it");
        for _ in 0..5 {
            assert!(future.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "the task's own wake-ups do not"
        );

        ready.store(true, Ordering::SeqCst);
        let waker = inner_waker.lock().unwrap().take().unwrap();
        waker.wake();
        assert_eq!(
            task_wakes.0.load(Ordering::SeqCst),
            1,
            "its wake-up wakes the task"
        );
        assert!(future.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_start_then_from_the_last_end() {
        let activity = Activity::new();
        let start = Instant::now();
        assert_eq!(activity.idle(), Idle::BeforeFirst { since: start });

        tokio::time::advance(Duration::from_secs(1)).await;
        let first = activity.begin();
        let second = activity.begin();
        assert_eq!(activity.idle(), Idle::No);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(second);
        assert_eq!(activity.idle(), Idle::No, "one is still in flight");
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(first);
        assert_eq!(activity.idle(), Idle::Since(start + Duration::from_secs(3)));
    }
}
