//! [`SqlStore`]: the store in SQLite (the `sqlite` feature: a file, the embedded default)
//! or PostgreSQL (the `postgres` feature: several replicas), with the same portable SQL
//! (`flow-service/migrations/`) on both.
//!
//! - The `completions` table's primary key makes a token single-use: a completion is
//!   written in the same transaction as the call's outcome, and when two replicas race
//!   to complete one token the database picks exactly one winner. Where calls are not
//!   claimed (SQLite) the completion's row is that outcome (its params under its key,
//!   answered again while an outcome would be kept), so the durable commit writes one
//!   table and its index instead of two tables and three indexes; PostgreSQL writes the
//!   outcome under the key too, where claims look.
//! - An outcome row is first a claim (`outcome` NULL, held until `expires_at`), then the
//!   answer; a lapsed claim is taken over by a compare on `expires_at`, so only one
//!   caller wins it.
//! - Every operation is bounded by [`StoreOptions::timeout`], except a read of a SQLite
//!   file, which runs on the caller's thread: it waits at most half the timeout for a
//!   lock (SQLite's busy timeout) and is otherwise as fast as the disk (`super::lite`).
//! - Reads and writes take different paths. On a SQLite file, reads run on the
//!   caller's thread on read-only connections (`super::lite`; WAL lets them read while
//!   a write commits) and every write goes to the file's one writer (`super::writer`),
//!   which commits the writes queued at that moment in one transaction, fsynced when
//!   one of them is a `finish`. On PostgreSQL (and `sqlite::memory:`, one connection),
//!   each write runs in a transaction of its own on the pool; a `finish` asks
//!   PostgreSQL for a synchronous commit. The statements of each write are the same on
//!   every path (`super::write`), but for three statements that are PostgreSQL's alone,
//!   each one round trip where the portable ones took several: a new key's claim with
//!   the call's read ([`Store::claim_and_open`], sent down the read path), a completion
//!   under a key and a step's session with its outcome (`super::write`'s
//!   `FINISH_COMPLETION` and `KEEP_BOTH`).

use std::future::Future;
use std::str::FromStr;

#[cfg(feature = "sqlite")]
use std::sync::Arc;

use serde_json::{Map, Value};
#[cfg(feature = "sqlite")]
use sqlx::ConnectOptions;
use sqlx::Connection;
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgConnection};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

#[cfg(feature = "sqlite")]
use super::DatabaseError;
#[cfg(feature = "sqlite")]
use super::lite::{self, Readers};
use super::write::{self, Arg, ClaimRow, Row, Write, Written, bind_args};
#[cfg(feature = "sqlite")]
use super::writer::Writer;
use super::{
    CLAIM_LEASE, Claim, Completion, Finished, Opened, Opening, Store, StoreError, StoreOptions,
    TokenKey, millis, now_ms, redact,
};
use crate::sdk::Outcome;

/// The migrations of `flow-service/migrations/`, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub(super) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(super::pg::PgPool),
}

/// Where reads go.
#[derive(Clone)]
enum Reads {
    /// The one pool: PostgreSQL and `sqlite::memory:`.
    Pool(Pool),
    /// A SQLite file: read-only connections used on the caller's thread.
    #[cfg(feature = "sqlite")]
    File(Arc<Readers>),
}

/// Where writes go.
#[derive(Clone)]
enum Writes {
    /// Each write in its own transaction on the pool: PostgreSQL (the database orders
    /// concurrent writers itself) and `sqlite::memory:` (one connection).
    Pool(Pool),
    /// A SQLite file: the one writer, which commits queued writes in groups.
    #[cfg(feature = "sqlite")]
    Writer(Arc<Writer>),
}

/// Completions, outcomes and sessions, in SQLite or PostgreSQL. Cheap to clone: clones
/// share the connections (and, for a SQLite file, the writer).
#[derive(Clone)]
pub struct SqlStore {
    /// Where every read goes. For a SQLite file, read-only connections, which WAL lets
    /// read while the writer commits; otherwise the one pool.
    reads: Reads,
    /// Where every write goes: for a SQLite file, the writer (`super::writer`);
    /// otherwise the same pool as `reads`.
    writes: Writes,
    options: StoreOptions,
    /// The URL with any password masked, for logs.
    url: String,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish()
    }
}

impl SqlStore {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` (created if missing), `sqlite::memory:` (gone with the process),
    /// or `postgres://USER:PASSWORD@HOST:PORT/DB` (also `postgresql://`), each when its
    /// feature is built. Of a `sqlite://` URL only the path counts once the schema is
    /// migrated: query options (`?mode=…`, `?vfs=…`) apply to the migration alone.
    /// Fails when the database cannot be reached within [`StoreOptions::connect_timeout`].
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let shown = redact(url);
        let (reads, writes) = Self::open(url, &shown, &options).await?;
        Ok(SqlStore {
            reads,
            writes,
            options,
            url: shown,
        })
    }

    /// The connections, with the schema brought up to date. Two replicas starting
    /// together are fine: sqlx serialises migrations with a lock (an advisory lock on
    /// PostgreSQL).
    async fn open(
        url: &str,
        shown: &str,
        options: &StoreOptions,
    ) -> Result<(Reads, Writes), StoreError> {
        let connect_error = |error: sqlx::Error| StoreError::Connect {
            url: shown.to_owned(),
            error: error.into(),
        };
        let migrate_error = |error: sqlx::migrate::MigrateError| StoreError::Migrate(error.into());
        let not_in_time = || StoreError::Connect {
            url: shown.to_owned(),
            error: format!(
                "the database did not open within {:?} (the connect timeout)",
                options.connect_timeout
            )
            .into(),
        };
        #[cfg(feature = "sqlite")]
        if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(connect_error)?
                // Half the bound: SQLite gives up waiting for a lock itself, rather
                // than leave a statement queued after its caller timed out.
                .busy_timeout(options.timeout / 2);
            if memory {
                // An in-memory database lives as long as a connection to it: keep one,
                // and one pool (a second would open another database).
                let pool = SqlitePoolOptions::new()
                    .acquire_timeout(options.timeout)
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(connect)
                    .await
                    .map_err(connect_error)?;
                MIGRATOR.run(&pool).await.map_err(migrate_error)?;
                return Ok((
                    Reads::Pool(Pool::Sqlite(pool.clone())),
                    Writes::Pool(Pool::Sqlite(pool)),
                ));
            }
            // A sqlx connection creates the file and the WAL, and migrates; then the
            // file's reads and its writer go through rusqlite (`super::lite`). All of
            // that, waiting for another process's lock included, within the connect
            // timeout.
            let creating = connect
                .clone()
                .busy_timeout(options.connect_timeout)
                .create_if_missing(true)
                // WAL lets readers go on while the writer commits.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            let opening = async {
                let mut conn = creating.connect().await.map_err(connect_error)?;
                MIGRATOR.run(&mut conn).await.map_err(migrate_error)?;
                conn.close().await.map_err(connect_error)
            };
            tokio::time::timeout(options.connect_timeout, opening)
                .await
                .map_err(|_| not_in_time())??;
            let path = connect.get_filename().to_owned();
            let busy = options.timeout / 2;
            // rusqlite's errors, the writer thread's spawn and a closed reader alike.
            let cannot_open = |error: DatabaseError| StoreError::Connect {
                url: shown.to_owned(),
                error,
            };
            // Its commits are fsynced only when a batch holds a durable write (see
            // `super::writer`).
            let writing = lite::open_writer(&path, busy).map_err(|e| cannot_open(e.into()))?;
            let writer =
                Writer::start(writing, path.clone(), busy).map_err(|e| cannot_open(e.into()))?;
            let readers = Readers::new(path, busy);
            // A first read of the schema now: a file that cannot be read fails the
            // start, not a call.
            readers
                .read(|conn| conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())))
                .map_err(|e| cannot_open(e.into()))?;
            return Ok((
                Reads::File(Arc::new(readers)),
                Writes::Writer(Arc::new(writer)),
            ));
        }
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Commits do not wait for the WAL flush unless a transaction asks for it
            // (`SET LOCAL synchronous_commit = on`, as every `finish` does): claims and
            // kept outcomes are visible to every replica at once, and a database crash
            // loses at most the last fraction of a second of them.
            let (url, left_out) = super::pg::sqlx_params_only(url);
            for parameter in left_out {
                tracing::warn!(
                    %parameter,
                    "a parameter of the database URL that sqlx does not read is left out (its value is not logged)"
                );
            }
            let connect = PgConnectOptions::from_str(&url)
                .map_err(connect_error)?
                .options([("synchronous_commit", "off")]);
            // One connection first, so that a database that cannot be reached is
            // reported with its reason (refused, authentication…), not as a pool
            // timeout; it migrates the schema too, all within the connect timeout.
            let opening = async {
                let mut first = PgConnection::connect_with(&connect)
                    .await
                    .map_err(connect_error)?;
                MIGRATOR.run(&mut first).await.map_err(migrate_error)?;
                let _ = first.close().await;
                Ok::<_, StoreError>(())
            };
            tokio::time::timeout(options.connect_timeout, opening)
                .await
                .map_err(|_| not_in_time())??;
            let pool = super::pg::pool(connect, options.max_connections, options.timeout);
            return Ok((
                Reads::Pool(Pool::Postgres(pool.clone())),
                Writes::Pool(Pool::Postgres(pool)),
            ));
        }
        Err(StoreError::Url(shown.to_owned()))
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Where a completion's row is its outcome (SQLite), the earliest completion time,
    /// at `now`, whose outcome a resend still gets: the outcomes' lifetime ago.
    fn completions_answered_since(&self, now: i64) -> i64 {
        now.saturating_sub(millis(self.options.idempotency_ttl))
    }

    /// Bounds `work` by the store's timeout and names it in errors.
    async fn bounded<T, E>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let timeout = self.options.timeout;
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result.map_err(|error| StoreError::Query {
                op,
                error: error.into(),
            }),
            Err(_) => Err(StoreError::Timeout { op, timeout }),
        }
    }

    /// The first row of the read `sql`, if any: on a SQLite file on this thread (see
    /// `super::lite`), else on the pool, bounded by the store's timeout.
    async fn fetch_optional<T: Row>(
        &self,
        op: &'static str,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, StoreError> {
        match &self.reads {
            #[cfg(feature = "sqlite")]
            Reads::Pool(Pool::Sqlite(pool)) => {
                let read = bind_args!(sqlx::query_as::<_, T>(sql), args).fetch_optional(pool);
                self.bounded(op, read).await
            }
            #[cfg(feature = "postgres")]
            Reads::Pool(Pool::Postgres(pool)) => {
                let read = async {
                    let mut held = super::pg::Held::get(pool).await?;
                    let row = bind_args!(sqlx::query_as::<_, T>(sql), args)
                        .fetch_optional(held.conn())
                        .await?;
                    held.settle();
                    Ok::<_, sqlx::Error>(row)
                };
                self.bounded(op, read).await
            }
            #[cfg(feature = "sqlite")]
            Reads::File(readers) => readers
                .read(|conn| lite::fetch_optional(conn, sql, args))
                .map_err(|error| StoreError::Query {
                    op,
                    error: error.into(),
                }),
        }
    }

    /// Runs `write`: on a SQLite file through the writer, else in its own transaction
    /// on the pool; bounded by the store's timeout either way.
    async fn write(&self, write: Write) -> Result<Written, StoreError> {
        let op = write.op();
        match &self.writes {
            Writes::Pool(pool) => self.bounded(op, write::on_pool(pool, &write)).await,
            #[cfg(feature = "sqlite")]
            Writes::Writer(writer) => self.bounded(op, writer.write(write)).await,
        }
    }
}

/// A new key's claim and the call's read in one PostgreSQL statement: the insert
/// does nothing when the key is there already (then `claimed` is empty), and the reads
/// see `completions` and `sessions` as they were when it began, which the claim does
/// not touch.
const CLAIM_AND_OPEN: &str = "WITH claimed AS (\
     INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
     VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING RETURNING 1) \
     SELECT EXISTS (SELECT 1 FROM claimed), \
     (SELECT completed_at FROM completions WHERE token_hash = $1), \
     (SELECT state FROM sessions WHERE token_hash = $1 AND expires_at > $4)";

/// What a call needs before its handler runs, from the columns read: the token's
/// completion time, the outcome stored under the call's key (read only when there is
/// a key) and the session's state, both JSON.
fn opened(
    completed: Option<i64>,
    outcome: Option<String>,
    state: Option<String>,
) -> Result<Opened, StoreError> {
    let stored = outcome
        .map(|outcome| serde_json::from_str(&outcome))
        .transpose()
        .map_err(|error| StoreError::Corrupt {
            what: "outcome",
            error,
        })?;
    let session = match state {
        None => Map::new(),
        Some(state) => serde_json::from_str(&state).map_err(|error| StoreError::Corrupt {
            what: "session",
            error,
        })?,
    };
    Ok(Opened {
        completed: completed.is_some(),
        stored,
        session,
    })
}

/// The outcome of a completion, from its row's params (JSON).
fn completion_outcome(params: &str) -> Result<Outcome, StoreError> {
    serde_json::from_str(params)
        .map(|params| Outcome::Complete { params })
        .map_err(|error| StoreError::Corrupt {
            what: "completion",
            error,
        })
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.reads {
            #[cfg(feature = "sqlite")]
            Reads::Pool(Pool::Sqlite(_)) | Reads::File(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Reads::Pool(Pool::Postgres(_)) => "postgres",
        }
    }

    fn url(&self) -> &str {
        &self.url
    }

    /// Closes the readers, then lets the writer finish what is queued and close.
    async fn close(&self) {
        match &self.reads {
            #[cfg(feature = "sqlite")]
            Reads::Pool(Pool::Sqlite(pool)) => pool.close().await,
            #[cfg(feature = "postgres")]
            Reads::Pool(Pool::Postgres(pool)) => super::pg::close(pool).await,
            #[cfg(feature = "sqlite")]
            Reads::File(readers) => readers.close(),
        }
        #[cfg(feature = "sqlite")]
        if let Writes::Writer(writer) = &self.writes {
            writer.stop().await;
        }
    }

    /// Whether `token` has been completed.
    async fn is_completed(&self, token: &TokenKey) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = self
            .fetch_optional(
                "completion lookup",
                "SELECT completed_at FROM completions WHERE token_hash = $1",
                &[Arg::Text(token.as_str())],
            )
            .await?;
        Ok(row.is_some())
    }

    /// The completion of `token`, if it has one.
    async fn completion(&self, token: &TokenKey) -> Result<Option<Completion>, StoreError> {
        let row: Option<(String, String, String, i64)> = self
            .fetch_optional(
                "completion lookup",
                "SELECT flow, params, idempotency_key, completed_at \
                 FROM completions WHERE token_hash = $1",
                &[Arg::Text(token.as_str())],
            )
            .await?;
        row.map(|(flow, params, idempotency_key, completed_at)| {
            Ok(Completion {
                flow,
                params: serde_json::from_str(&params).map_err(|error| StoreError::Corrupt {
                    what: "completion",
                    error,
                })?,
                idempotency_key,
                completed_at,
            })
        })
        .transpose()
    }

    /// Looks up the call `key` of `token`, claiming it when it is new. Where calls are
    /// not claimed (SQLite), a completion's outcome is its row, not in `outcomes`, so
    /// that row is looked at first, in a read of its own: a completion landing between
    /// that read and the claim is not seen (the pipeline claims nothing on SQLite, and
    /// its own single flight keeps one call of a key at a time).
    async fn claim(&self, token: &TokenKey, key: &str) -> Result<Claim, StoreError> {
        let now = now_ms();
        if !self.claims_calls() {
            // As `open_call` reads it: a stored outcome first (the claim below answers
            // it), else the completion's row under this key.
            let row: Option<(Option<String>, Option<String>)> = self
                .fetch_optional(
                    "claim",
                    "SELECT \
                     (SELECT outcome FROM outcomes WHERE token_hash = $1 \
                      AND idempotency_key = $2 AND expires_at > $3 AND outcome IS NOT NULL), \
                     (SELECT params FROM completions \
                      WHERE token_hash = $1 AND idempotency_key = $2 AND completed_at > $4)",
                    &[
                        Arg::Text(token.as_str()),
                        Arg::Text(key),
                        Arg::Int(now),
                        Arg::Int(self.completions_answered_since(now)),
                    ],
                )
                .await?;
            if let Some((None, Some(params))) = row {
                return completion_outcome(&params).map(Claim::Done);
            }
        }
        let written = self
            .write(Write::Claim {
                hash: *token,
                key: key.to_owned(),
                now,
                lease: now + millis(CLAIM_LEASE),
            })
            .await?;
        match written {
            Written::Claim(ClaimRow::Claimed) => Ok(Claim::Claimed),
            Written::Claim(ClaimRow::InProgress) => Ok(Claim::InProgress),
            Written::Claim(ClaimRow::Done(outcome)) => serde_json::from_str(&outcome)
                .map(Claim::Done)
                .map_err(|error| StoreError::Corrupt {
                    what: "outcome",
                    error,
                }),
            other => unreachable!("a claim answered {other:?}"),
        }
    }

    /// Gives up the claim on `key` without an outcome (the handler failed), so that a
    /// retry runs the handler again.
    async fn release(&self, token: &TokenKey, key: &str) -> Result<(), StoreError> {
        self.write(Write::Release {
            hash: *token,
            key: key.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Records what a call of `flow` for `token` answered, in one durable transaction
    /// (on a SQLite file, with the other writes of its batch): the completion (when
    /// `outcome` is one), the outcome under `key` (when given; on SQLite a completion's
    /// row is its outcome) and the session (when given; a completion deletes it instead,
    /// as the token is done).
    async fn finish(
        &self,
        flow: &str,
        token: &TokenKey,
        key: Option<&str>,
        outcome: &Outcome,
        session: Option<&Map<String, Value>>,
    ) -> Result<Finished, StoreError> {
        let now = now_ms();
        let written = self
            .write(Write::Finish {
                flow: flow.to_owned(),
                hash: *token,
                key: key.map(str::to_owned),
                completion: match outcome {
                    Outcome::Complete { params } => Some(params.to_string()),
                    _ => None,
                },
                claimed: self.claims_calls(),
                outcome: serde_json::to_string(outcome).expect("an outcome serialises"),
                outcome_expires: now + millis(self.options.idempotency_ttl),
                session: session.map(|s| Value::Object(s.clone()).to_string()),
                session_expires: now + millis(self.options.session_ttl),
                now,
            })
            .await?;
        match written {
            Written::Finished(finished) => Ok(finished),
            other => unreachable!("a finish answered {other:?}"),
        }
    }

    /// The session of `token`: an empty object when it has none or it expired.
    async fn session(&self, token: &TokenKey) -> Result<Map<String, Value>, StoreError> {
        let now = now_ms();
        let row: Option<(String,)> = self
            .fetch_optional(
                "session lookup",
                "SELECT state FROM sessions WHERE token_hash = $1 AND expires_at > $2",
                &[Arg::Text(token.as_str()), Arg::Int(now)],
            )
            .await?;
        match row {
            None => Ok(Map::new()),
            Some((state,)) => serde_json::from_str(&state).map_err(|error| StoreError::Corrupt {
                what: "session",
                error,
            }),
        }
    }

    /// A claim is one more write per call (on PostgreSQL, in the statement of the
    /// call's read); only PostgreSQL, with replicas on one database, needs it (see
    /// [`Store::claims_calls`]).
    fn claims_calls(&self) -> bool {
        self.backend() == "postgres"
    }

    /// One statement: the completion, the stored outcome and the session, each a
    /// scalar subquery on its table's primary key. Where calls are not claimed (SQLite)
    /// a completion's outcome is not in `outcomes` but is its row: its params, when the
    /// row's key is the call's and it is younger than the outcomes' lifetime — the
    /// lifetime set now, where an outcome row keeps the expiry set when it was written.
    /// (A row in `outcomes`, as earlier versions wrote for completions too, comes
    /// first.)
    async fn open_call(&self, token: &TokenKey, key: Option<&str>) -> Result<Opened, StoreError> {
        let now = now_ms();
        let row: Option<(Option<i64>, Option<String>, Option<String>, Option<String>)> = self
            .fetch_optional(
                "call lookup",
                "SELECT \
                 (SELECT completed_at FROM completions WHERE token_hash = $1), \
                 (SELECT outcome FROM outcomes \
                  WHERE token_hash = $1 AND idempotency_key = $2 AND expires_at > $3), \
                 (SELECT params FROM completions \
                  WHERE token_hash = $1 AND idempotency_key = $2 AND completed_at > $4), \
                 (SELECT state FROM sessions WHERE token_hash = $1 AND expires_at > $3)",
                &[
                    Arg::Text(token.as_str()),
                    Arg::Text(key.unwrap_or_default()),
                    Arg::Int(now),
                    Arg::Int(self.completions_answered_since(now)),
                ],
            )
            .await?;
        // A SELECT without FROM returns exactly one row.
        let (completed, outcome, completion, state) = row.unwrap_or_default();
        let mut opened = opened(completed, outcome.filter(|_| key.is_some()), state)?;
        if let (None, Some(params), Some(_)) = (&opened.stored, completion, key) {
            opened.stored = Some(completion_outcome(&params)?);
        }
        Ok(opened)
    }

    /// On PostgreSQL, the claim and the read in one statement (`CLAIM_AND_OPEN`); a
    /// key already there (a finished call, one in progress, a lapsed claim) goes on as
    /// [`Store::claim`] then [`Store::open_call`], which tell those apart.
    async fn claim_and_open(&self, token: &TokenKey, key: &str) -> Result<Opening, StoreError> {
        if self.claims_calls() {
            let now = now_ms();
            let row: Option<(bool, Option<i64>, Option<String>)> = self
                .fetch_optional(
                    "claim",
                    CLAIM_AND_OPEN,
                    &[
                        Arg::Text(token.as_str()),
                        Arg::Text(key),
                        Arg::Int(now + millis(CLAIM_LEASE)),
                        Arg::Int(now),
                    ],
                )
                .await?;
            if let Some((true, completed, state)) = row {
                return match opened(completed, None, state) {
                    Ok(opened) => Ok(Opening::Claimed(opened)),
                    Err(error) => {
                        // The claim was taken, but the call cannot go on: give it up.
                        super::release_after_failed_read(self, token, key).await;
                        Err(error)
                    }
                };
            }
        }
        super::claim_then_open(self, token, key).await
    }

    /// On a SQLite file, the session alone (when given), committed without an fsync
    /// unless its batch holds a durable write — the outcome stays in the process's
    /// memory; on PostgreSQL, the session and the outcome under `key`, in one
    /// asynchronous commit (both at once: one statement).
    async fn keep(
        &self,
        flow: &str,
        token: &TokenKey,
        key: Option<&str>,
        outcome: &Outcome,
        session: Option<&Map<String, Value>>,
    ) -> Result<(), StoreError> {
        let key = key.filter(|_| self.claims_calls());
        if key.is_none() && session.is_none() {
            return Ok(());
        }
        let now = now_ms();
        self.write(Write::Keep {
            flow: flow.to_owned(),
            hash: *token,
            outcome: key.map(|key| {
                let outcome = serde_json::to_string(outcome).expect("an outcome serialises");
                (key.to_owned(), outcome)
            }),
            outcome_expires: now + millis(self.options.idempotency_ttl),
            session: session.map(|s| Value::Object(s.clone()).to_string()),
            session_expires: now + millis(self.options.session_ttl),
        })
        .await
        .map(drop)
    }

    /// Deletes expired outcomes, claims and sessions; returns how many rows went.
    /// Completions are business records and are never deleted here. The rows go in
    /// batches, each a write of its own, so that a backlog goes down a batch at a time
    /// instead of failing whole on the store's timeout.
    /// On PostgreSQL, also closes the pool's connections idle or open for too long.
    async fn cleanup_expired(&self) -> Result<u64, StoreError> {
        // Irrefutable in a build with PostgreSQL alone.
        #[cfg(feature = "postgres")]
        #[allow(irrefutable_let_patterns)]
        if let Reads::Pool(Pool::Postgres(pool)) = &self.reads {
            use super::pg::{IDLE_TIMEOUT, MAX_LIFETIME, prune};
            prune(pool, IDLE_TIMEOUT, MAX_LIFETIME).await;
        }
        let now = now_ms();
        let mut deleted = 0;
        loop {
            match self.write(Write::Cleanup { now }).await? {
                Written::Deleted(rows) => {
                    deleted += rows;
                    // Neither table's batch came back full: nothing expired is left.
                    if rows < write::CLEANUP_BATCH.unsigned_abs() {
                        return Ok(deleted);
                    }
                }
                other => unreachable!("a cleanup answered {other:?}"),
            }
        }
    }
}
