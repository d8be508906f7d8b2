//! Threads that serve connections besides the caller's: each runs a current-thread
//! runtime of its own, so every task of a connection — its HTTP, its handler, the call
//! to the flow service and the HTTP/2 connection that carries it — runs on one thread,
//! and no request wakes another thread on its way. A multi-thread runtime hands a
//! request's tasks between its workers (a futex or an eventfd, a switch, a cold cache
//! each time); on two cores shared with the flow service that cost the gateway about a
//! sixth to a quarter of its CPU a plain request (docs/performance.md, "The gateway's
//! threads").
//!
//! Written here because tokio has no set of current-thread runtimes to hand work to
//! (its `LocalRuntime` is unstable, and a `LocalSet` per thread still needs the threads);
//! what it takes is a thread per runtime, its handle, and a stop signal.

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
    /// runtime until the `Workers` are dropped. (Linux shows a thread's name cut to 15
    /// bytes.)
    pub fn start(count: usize, name: &str) -> io::Result<Self> {
        let mut workers = Workers::default();
        for n in 1..=count {
            let (stop, stopped) = oneshot::channel::<()>();
            let (started, handle) = std::sync::mpsc::sync_channel(1);
            // The runtime is made on its thread and dropped there: a runtime dropped
            // on a thread that is inside another's `block_on` panics.
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    let _ = started.send(Ok(runtime.handle().clone()));
                    // Tasks spawned through the handle run while this thread is in
                    // `block_on`.
                    let _ = runtime.block_on(stopped);
                })?;
            let handle = match handle.recv() {
                Ok(Ok(handle)) => handle,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("a worker thread ended at start")),
            };
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
