//! [`Writer`]: the one writer of a SQLite file, committing writes in groups.
//!
//! SQLite lets one connection write at a time. Rather than have many connections queue
//! for that lock (SQLite's busy handler sleeps 1, 2, 5, 10… ms between tries) and pay one
//! fsync per completion, every write of the store goes to one thread that owns the one
//! writing connection (rusqlite, `super::lite`: the batch runs whole on that thread,
//! its commit's fsync blocking no task):
//!
//! - it takes the first write queued, takes the file's write lock (`BEGIN IMMEDIATE`),
//!   then every write queued by then (at most [`BATCH`] in all), and runs them, in
//!   order, in ONE transaction, then commits and answers each. Writes that arrive while
//!   the writer waits for the lock (another process holds it) thus join its batch;
//! - the batch commits with `synchronous=FULL` when its first write is durable (a
//!   `finish`), so that every completion is on disk before its caller hears back, and
//!   with `synchronous=NORMAL` otherwise (in the WAL: it survives the process, not the
//!   machine). SQLite fixes the setting before the transaction, so a batch that began
//!   without an fsync ends before the first durable write, which begins the next. A
//!   write that needs no fsync may ride along in a durable batch; it never waits for
//!   one otherwise;
//! - each write has the same effect as alone: a completion of a token completed before,
//!   in this batch too, writes nothing and is [`Finished::AlreadyCompleted`](super::Finished);
//! - when a statement fails, the whole batch is rolled back and every write of it fails
//!   with the database's complaint: nothing of it was written, and the callers answer
//!   `UNAVAILABLE`, so that a retry runs the call again.
//!
//! **Timeouts.** The caller bounds its wait (queueing, the batch, the commit) by
//! [`StoreOptions::timeout`](super::StoreOptions::timeout). A write whose caller gave up
//! before the writer took it is skipped: it never runs. One taken into a batch runs with
//! it; if that batch commits after its caller gave up, it is as if the answer had been
//! lost on the way, as with a commit that outlives a timeout on any database: a
//! completion is recorded with its outcome under its key, so the retry (same key) gets
//! the same `SUCCESS` without running the handler, and a kept session holds the step's
//! changes, which the step's retry makes again. The writer itself never waits for the
//! lock longer than the connection's busy timeout (half the store's timeout: only
//! another process can hold it), and fails that write then; the writes queued
//! meanwhile get their own try.
//!
//! [`Writer::stop`] lets the writes queued before it finish, refuses the rest and closes
//! the connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::lite::{Lite, open_writer};
use super::write::{Write, Written, apply};

/// Most writes in one transaction: a bound on how long one batch holds the lock.
pub(super) const BATCH: usize = 256;

/// How many writes may wait for the writer. Callers beyond it wait to queue, within
/// their timeout.
const QUEUE: usize = 4 * BATCH;

/// Why a write through the [`Writer`] did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    /// A statement of the write's batch failed: the batch was rolled back whole.
    #[error("{error} (the batch of {writes} writes was rolled back)")]
    Batch {
        writes: usize,
        error: Arc<rusqlite::Error>,
    },
    #[error("the store is closed")]
    Closed,
}

/// The handle on the writer thread. Dropping every handle stops the thread too.
#[derive(Debug)]
pub(super) struct Writer {
    queue: mpsc::Sender<Message>,
}

// Nearly every message is a write; a stop is sent once per store, so the variants'
// difference in size wastes nothing, where boxing the job would allocate per write.
#[expect(
    clippy::large_enum_variant,
    reason = "a stop is sent once; a write would pay for a box every time"
)]
enum Message {
    Write(Job),
    /// Stop after the writes queued before this; answered once the connection is closed.
    Stop(oneshot::Sender<()>),
}

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Written, WriteError>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, opened by [`open_writer`] on `path`, which it
    /// reopens when the connection breaks (waiting at most `busy` for a lock).
    pub(super) fn start(conn: Connection, path: PathBuf, busy: Duration) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, &path, busy, jobs))?;
        Ok(Writer { queue })
    }

    /// Queues `write` and waits until its batch is committed (or failed). Bounded by
    /// the caller; see the module's "Timeouts".
    pub(super) async fn write(&self, write: Write) -> Result<Written, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Write(Job { write, reply }))
            .await
            .map_err(|_| WriteError::Closed)?;
        answer.await.map_err(|_| WriteError::Closed)?
    }

    /// Lets the writes queued so far finish, then closes the connection; later writes
    /// fail with [`WriteError::Closed`].
    pub(super) async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.queue.send(Message::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

/// The writer thread: one batch at a time until stopped or every handle is gone.
fn run(mut conn: Connection, path: &Path, busy: Duration, mut queue: mpsc::Receiver<Message>) {
    // The connection's `synchronous` setting: it was opened with NORMAL.
    let mut full = false;
    // A durable write taken from the queue during a batch without an fsync: it begins
    // the next batch.
    let mut held: Option<Job> = None;
    let mut stopping = Vec::new();
    loop {
        let first = match held.take() {
            Some(job) if job.reply.is_closed() => continue,
            Some(job) => job,
            None => match queue.blocking_recv() {
                // A write whose caller gave up (timed out) before now never runs.
                Some(Message::Write(job)) if job.reply.is_closed() => continue,
                Some(Message::Write(job)) => job,
                Some(Message::Stop(done)) => {
                    stopping.push(done);
                    break;
                }
                None => break,
            },
        };
        let durable = first.write.durable();
        if let Err(error) = begin(&conn, &mut full, durable) {
            // The lock did not come within the busy timeout (or the connection broke):
            // this write fails; those queued meanwhile get their own try.
            answer(&mut conn, path, busy, &mut full, vec![first], Err(error));
            continue;
        }
        // Every write queued by now, in order, up to a batch; a stop ends it.
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match queue.try_recv() {
                Ok(Message::Write(job)) if job.reply.is_closed() => {}
                Ok(Message::Write(job)) if !durable && job.write.durable() => {
                    held = Some(job);
                    break;
                }
                Ok(Message::Write(job)) => jobs.push(job),
                Ok(Message::Stop(done)) => {
                    stopping.push(done);
                    break;
                }
                Err(_) => break,
            }
        }
        let written = batch(&conn, &jobs);
        answer(&mut conn, path, busy, &mut full, jobs, written);
        if !stopping.is_empty() {
            break;
        }
    }
    queue.close();
    // Writes queued meanwhile are dropped, answered `Closed`.
    while let Ok(message) = queue.try_recv() {
        if let Message::Stop(done) = message {
            stopping.push(done);
        }
    }
    if let Err((_, error)) = conn.close() {
        tracing::warn!(%error, "closing the SQLite writer's connection failed");
    }
    for done in stopping {
        let _ = done.send(());
    }
}

/// Sets `synchronous` for a batch that is `durable` or not (outside a transaction:
/// SQLite refuses to change it inside one), then takes the write lock: IMMEDIATE, so
/// that no statement of the batch can find it taken by another process half-way.
fn begin(conn: &Connection, full: &mut bool, durable: bool) -> rusqlite::Result<()> {
    if durable != *full {
        let set = if durable { "FULL" } else { "NORMAL" };
        conn.pragma_update(None, "synchronous", set)?;
        *full = durable;
    }
    conn.execute_batch("BEGIN IMMEDIATE")
}

/// Every job's statements in the transaction begun, then the commit; on any failure,
/// the transaction rolled back.
fn batch(conn: &Connection, jobs: &[Job]) -> rusqlite::Result<Vec<Written>> {
    let mut written = Vec::with_capacity(jobs.len());
    for job in jobs {
        match futures_executor::block_on(apply(&mut Lite(conn), &job.write)) {
            Ok(done) => written.push(done),
            Err(error) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(error);
            }
        }
    }
    if let Err(error) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(error);
    }
    Ok(written)
}

/// Answers each job of a batch; after a failure, replaces a connection that is broken
/// or whose transaction state is unknown, so that the next batch starts clean.
fn answer(
    conn: &mut Connection,
    path: &Path,
    busy: Duration,
    full: &mut bool,
    jobs: Vec<Job>,
    written: rusqlite::Result<Vec<Written>>,
) {
    match written {
        Ok(written) => {
            for (job, written) in jobs.into_iter().zip(written) {
                let _ = job.reply.send(Ok(written));
            }
        }
        Err(error) => {
            tracing::debug!(%error, writes = jobs.len(), "a batch of writes failed");
            if !conn.is_autocommit() || !matches!(error, rusqlite::Error::SqliteFailure(..)) {
                match open_writer(path, busy) {
                    Ok(fresh) => {
                        drop(std::mem::replace(conn, fresh));
                        *full = false;
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "cannot reopen the SQLite writer's connection; trying again after the next failure"
                    ),
                }
            }
            let error = Arc::new(error);
            let writes = jobs.len();
            for job in jobs {
                let _ = job.reply.send(Err(WriteError::Batch {
                    writes,
                    error: error.clone(),
                }));
            }
        }
    }
}
