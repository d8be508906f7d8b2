//! [`Writer`]: the one writer of a SQLite file, committing writes in groups.
//!
//! SQLite lets one connection write at a time. Rather than have many connections queue
//! for that lock (SQLite's busy handler sleeps 1, 2, 5, 10… ms between tries) and pay one
//! fsync per completion, every write of the store goes to one task that owns the one
//! writing connection:
//!
//! - it takes every write queued at that moment (at most [`BATCH`]) and runs them, in
//!   order, in ONE transaction (`BEGIN IMMEDIATE` … `COMMIT`), then answers each;
//! - the batch commits with `synchronous=FULL` when any of its writes is durable (a
//!   `finish`), so that every completion is on disk before its caller hears back, and
//!   with `synchronous=NORMAL` otherwise (in the WAL: it survives the process, not the
//!   machine). A write that needs no fsync may ride along in a durable batch; it never
//!   waits for one otherwise;
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
//! another process can hold it), and fails that batch then.
//!
//! [`Writer::stop`] lets the writes queued before it finish, refuses the rest and closes
//! the connection.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};

use super::write::{Conn, Write, Written, apply};

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
        error: Arc<sqlx::Error>,
    },
    #[error("the store is closed")]
    Closed,
}

/// The handle on the writer task. Dropping every handle stops the task too.
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
    /// Starts the writer task on `conn`, a connection opened with `options`
    /// (`synchronous=NORMAL`), which it reopens with when the connection breaks.
    pub(super) fn start(conn: SqliteConnection, options: SqliteConnectOptions) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, options, jobs));
        Writer { queue }
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

/// The writer task: one batch at a time until stopped or every handle is gone.
async fn run(
    mut conn: SqliteConnection,
    options: SqliteConnectOptions,
    mut queue: mpsc::Receiver<Message>,
) {
    let mut messages = Vec::with_capacity(BATCH);
    // The connection's `synchronous` setting: it was opened with NORMAL.
    let mut full = false;
    let mut stopping = Vec::new();
    while queue.recv_many(&mut messages, BATCH).await > 0 {
        let mut jobs = Vec::with_capacity(messages.len());
        for message in messages.drain(..) {
            match message {
                // A write whose caller gave up (timed out) before now never runs.
                Message::Write(job) if stopping.is_empty() && !job.reply.is_closed() => {
                    jobs.push(job)
                }
                // Dropped: a write after a stop is answered `Closed`.
                Message::Write(_) => {}
                Message::Stop(done) => stopping.push(done),
            }
        }
        if !jobs.is_empty() {
            commit(&mut conn, &options, &mut full, jobs).await;
        }
        if !stopping.is_empty() {
            queue.close();
            // Writes queued meanwhile are dropped, answered `Closed`.
            while let Ok(message) = queue.try_recv() {
                if let Message::Stop(done) = message {
                    stopping.push(done);
                }
            }
            break;
        }
    }
    if let Err(error) = conn.close().await {
        tracing::warn!(%error, "closing the SQLite writer's connection failed");
    }
    for done in stopping {
        let _ = done.send(());
    }
}

/// Runs `jobs` as one batch and answers each.
async fn commit(
    conn: &mut SqliteConnection,
    options: &SqliteConnectOptions,
    full: &mut bool,
    jobs: Vec<Job>,
) {
    let durable = jobs.iter().any(|job| job.write.durable());
    match batch(conn, full, durable, &jobs).await {
        Ok(written) => {
            for (job, written) in jobs.into_iter().zip(written) {
                let _ = job.reply.send(Ok(written));
            }
        }
        Err(error) => {
            tracing::debug!(%error, writes = jobs.len(), "a batch of writes failed");
            // A broken connection, or one whose transaction state is unknown (a failed
            // COMMIT or ROLLBACK), is replaced, so the next batch starts clean.
            if conn.is_in_transaction() || !matches!(error, sqlx::Error::Database(_)) {
                match options.connect().await {
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

/// One transaction with every job's statements, committed with `synchronous=FULL` when
/// `durable`.
async fn batch(
    conn: &mut SqliteConnection,
    full: &mut bool,
    durable: bool,
    jobs: &[Job],
) -> Result<Vec<Written>, sqlx::Error> {
    if durable != *full {
        // Outside the transaction: the setting is read when it commits.
        let set = if durable {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        };
        sqlx::query(set).execute(&mut *conn).await?;
        *full = durable;
    }
    // IMMEDIATE: the write lock is taken now, so no statement of the batch can find
    // it taken by another process half-way through.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut written = Vec::with_capacity(jobs.len());
    for job in jobs {
        match apply(&mut Conn::Sqlite(&mut tx), &job.write).await {
            Ok(done) => written.push(done),
            Err(error) => {
                let _ = tx.rollback().await;
                return Err(error);
            }
        }
    }
    tx.commit().await?;
    Ok(written)
}
