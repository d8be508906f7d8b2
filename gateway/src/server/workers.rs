//! Threads that serve connections besides the caller's: each runs a current-thread
//! runtime of its own, so every task of a connection — its HTTP, its handler, the call
//! to the flow service and the HTTP/2 connection that carries it — runs on one thread,
//! and no request wakes another thread on its way. A multi-thread runtime hands a
//! request's tasks between its workers (a futex or an eventfd, a switch, a cold cache
//! each time); on two cores shared with the flow service that cost the gateway about a
//! third of its CPU a plain request (docs/performance.md, "The gateway's threads").

use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Running threads, each with a current-thread runtime; dropping them stops every
/// runtime (cancelling what still runs there) and waits for the threads to end.
#[derive(Debug, Default)]
pub struct Workers {
    threads: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` threads named `{name}-1`, `{name}-2`, …, each running its
    /// runtime until the `Workers` are dropped.
    pub fn start(count: usize, name: &str) -> io::Result<Self> {
        let mut workers = Workers::default();
        for n in 1..=count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    // Tasks spawned through the handle run while this thread is in
                    // `block_on`; the runtime is dropped here, on its own thread.
                    let _ = runtime.block_on(stopped);
                })?;
            workers.threads.push(Worker {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(workers)
    }

    /// A handle on each thread's runtime: spawn there, or enter it to make what must
    /// be made inside a runtime (its tasks then run on that thread).
    pub fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.threads.iter().map(|worker| &worker.handle)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.threads {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        for worker in &mut self.threads {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
