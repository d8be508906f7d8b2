//! The SQL store's writes as values ([`Write`]), and [`apply`]: the statements of one
//! write on one connection ([`Exec`]), in whatever transaction the caller holds.
//!
//! A write carries everything it needs (token key, JSON, expiry times), computed by
//! its caller, so the same write runs in its own transaction on a sqlx pool
//! (PostgreSQL, `sqlite::memory:`) or as one job of a SQLite file's batch
//! (`super::writer`, on a rusqlite connection). Two writes are shortened on PostgreSQL,
//! each one statement there with the effect of `apply`'s several: a completion under a
//! key ([`FINISH_COMPLETION`]) and a step's session with its outcome ([`KEEP_BOTH`]).

#[cfg(feature = "postgres")]
use sqlx::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::SqliteConnection;

use super::{Finished, TokenKey};

/// A session's state, replacing any earlier one: token hash, flow, state, expiry.
const UPSERT_SESSION: &str = "INSERT INTO sessions (token_hash, flow, state, expires_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE \
     SET flow = excluded.flow, state = excluded.state, expires_at = excluded.expires_at";

/// A call's outcome, replacing its claim: token hash, key, outcome, expiry.
const UPSERT_OUTCOME: &str = "INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash, idempotency_key) \
     DO UPDATE SET outcome = excluded.outcome, expires_at = excluded.expires_at";

/// Most expired rows of each table one cleanup write deletes: each batch is a short
/// write of its own (within the store's timeout, which PostgreSQL enforces too), and
/// the cleanup goes on with another while a batch comes back full.
pub(super) const CLEANUP_BATCH: i64 = 5_000;

/// One write of the store.
#[derive(Debug)]
pub(super) enum Write {
    /// [`Store::finish`](super::Store::finish): the completion (when `completion` holds
    /// its params), else the session; and the outcome under `key` — for a completion
    /// only when `claimed`.
    Finish {
        flow: String,
        hash: TokenKey,
        key: Option<String>,
        completion: Option<String>,
        /// Whether calls are claimed (PostgreSQL), so that a claim looks for a
        /// completion's outcome under its key in `outcomes`. Otherwise the completion's
        /// own row is its outcome (params, key and time: `sql::open_call` reads it
        /// there), and one table fewer is written in the durable commit.
        claimed: bool,
        outcome: String,
        outcome_expires: i64,
        session: Option<String>,
        session_expires: i64,
        now: i64,
    },
    /// [`Store::keep`](super::Store::keep): the session and, where calls are claimed,
    /// the outcome (key, JSON).
    Keep {
        flow: String,
        hash: TokenKey,
        outcome: Option<(String, String)>,
        outcome_expires: i64,
        session: Option<String>,
        session_expires: i64,
    },
    /// [`Store::claim`](super::Store::claim).
    Claim {
        hash: TokenKey,
        key: String,
        now: i64,
        lease: i64,
    },
    /// [`Store::release`](super::Store::release).
    Release { hash: TokenKey, key: String },
    /// [`Store::cleanup_expired`](super::Store::cleanup_expired).
    /// At most [`CLEANUP_BATCH`] expired outcomes and as many expired sessions.
    Cleanup { now: i64 },
}

/// What a [`Write`] did, by kind.
#[derive(Debug)]
pub(super) enum Written {
    Finished(Finished),
    Claim(ClaimRow),
    Deleted(u64),
    Done,
}

/// What a claim found, its outcome still JSON.
#[derive(Debug)]
pub(super) enum ClaimRow {
    Claimed,
    Done(String),
    InProgress,
}

impl Write {
    /// The operation's name in errors.
    pub(super) fn op(&self) -> &'static str {
        match self {
            Write::Finish { .. } => "finish",
            Write::Keep { .. } => "keep",
            Write::Claim { .. } => "claim",
            Write::Release { .. } => "claim release",
            Write::Cleanup { .. } => "cleanup",
        }
    }

    /// Whether the write must be on disk before its caller hears back: every `finish`
    /// (above all a completion). Any other write may be lost with the machine, never
    /// with the process.
    pub(super) fn durable(&self) -> bool {
        matches!(self, Write::Finish { .. })
    }

    /// Whether the write is several statements that must happen together, so that on
    /// a pool it needs a transaction of its own. (A claim's statements are each atomic
    /// and guarded by compares; one statement is a transaction of its own.)
    fn atomic(&self) -> bool {
        match self {
            Write::Finish { .. } => true,
            Write::Keep {
                outcome, session, ..
            } => outcome.is_some() && session.is_some(),
            Write::Claim { .. } | Write::Release { .. } | Write::Cleanup { .. } => false,
        }
    }
}

/// A value bound to a statement: the store binds only text and integers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// A row read back, by every backend built: a tuple of the columns' types.
#[cfg(feature = "sqlite")]
pub(super) trait SqliteRow:
    for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>
{
}
#[cfg(feature = "sqlite")]
impl<T> SqliteRow for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>
{
}
#[cfg(not(feature = "sqlite"))]
pub(super) trait SqliteRow {}
#[cfg(not(feature = "sqlite"))]
impl<T> SqliteRow for T {}

/// See [`SqliteRow`].
#[cfg(feature = "postgres")]
pub(super) trait PgRow: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> {}
#[cfg(feature = "postgres")]
impl<T> PgRow for T where T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> {}
#[cfg(not(feature = "postgres"))]
pub(super) trait PgRow {}
#[cfg(not(feature = "postgres"))]
impl<T> PgRow for T {}

/// A row type every backend reads: `(i64,)`, `(Option<String>, i64)`…
pub(super) trait Row: SqliteRow + PgRow + Send + Unpin + 'static {}
impl<T> Row for T where T: SqliteRow + PgRow + Send + Unpin + 'static {}

/// What runs a write's statements: a sqlx connection ([`Conn`]) or a SQLite file's
/// writing connection (`super::lite::Lite`, whose futures never wait). The SQL is the
/// same portable text on every backend (but for PostgreSQL's own statements:
/// [`FINISH_COMPLETION`], [`KEEP_BOTH`] and `sql`'s `CLAIM_AND_OPEN`), its values bound to
/// `$1`, `$2`… in order.
pub(super) trait Exec {
    type Error;
    /// Runs `sql`; how many rows it changed.
    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, Self::Error>;
    /// The first row `sql` returns, if any.
    async fn fetch_optional<T: Row>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, Self::Error>;
}

/// Binds `args` to a sqlx query, in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match *arg {
                Arg::Text(text) => query.bind(text),
                Arg::Int(int) => query.bind(int),
            };
        }
        query
    }};
}
pub(super) use bind_args;

/// A sqlx connection of either backend.
pub(super) enum Conn<'c> {
    #[cfg(feature = "sqlite")]
    Sqlite(&'c mut SqliteConnection),
    #[cfg(feature = "postgres")]
    Postgres(&'c mut PgConnection),
}

/// Runs the same expression on either backend's connection: the SQL is portable, only
/// the connection's type differs.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(conn) => {
                let $c: &mut SqliteConnection = &mut **conn;
                $body
            }
            #[cfg(feature = "postgres")]
            Conn::Postgres(conn) => {
                let $c: &mut PgConnection = &mut **conn;
                $body
            }
        }
    };
}

impl Exec for Conn<'_> {
    type Error = sqlx::Error;

    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        on_conn!(self, |c| bind_args!(sqlx::query(sql), args)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))
    }

    async fn fetch_optional<T: Row>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, sqlx::Error> {
        on_conn!(self, |c| bind_args!(sqlx::query_as::<_, T>(sql), args)
            .fetch_optional(c)
            .await)
    }
}

/// One of the two upserts `finish` and `keep` share, on `conn`: [`UPSERT_SESSION`]
/// (the token's flow and session state) or [`UPSERT_OUTCOME`] (an idempotency key and
/// its outcome). Both bind the token's key, two strings and an expiry, in that order.
async fn upsert<E: Exec>(
    conn: &mut E,
    statement: &'static str,
    hash: &TokenKey,
    (first, second): (&str, &str),
    expires_at: i64,
) -> Result<(), E::Error> {
    let args = [
        Arg::Text(hash.as_str()),
        Arg::Text(first),
        Arg::Text(second),
        Arg::Int(expires_at),
    ];
    conn.execute(statement, &args).await.map(drop)
}

/// Runs `write`'s statements on `conn`, inside whatever transaction it is in. A
/// completion of a token already completed writes nothing and is
/// [`Finished::AlreadyCompleted`].
pub(super) async fn apply<E: Exec>(conn: &mut E, write: &Write) -> Result<Written, E::Error> {
    match write {
        Write::Finish {
            flow,
            hash,
            key,
            completion,
            claimed,
            outcome,
            outcome_expires,
            session,
            session_expires,
            now,
        } => {
            if let Some(params) = completion {
                let inserted = conn
                    .execute(
                        "INSERT INTO completions \
                         (token_hash, flow, params, idempotency_key, completed_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO NOTHING",
                        &[
                            Arg::Text(hash.as_str()),
                            Arg::Text(flow),
                            Arg::Text(params),
                            Arg::Text(key.as_deref().unwrap_or_default()),
                            Arg::Int(*now),
                        ],
                    )
                    .await?;
                if inserted == 0 {
                    // Nothing of this write happened: the completion was the first.
                    return Ok(Written::Finished(Finished::AlreadyCompleted));
                }
                conn.execute(
                    "DELETE FROM sessions WHERE token_hash = $1",
                    &[Arg::Text(hash.as_str())],
                )
                .await?;
                if !claimed {
                    return Ok(Written::Finished(Finished::Recorded));
                }
            } else if let Some(state) = session {
                upsert(conn, UPSERT_SESSION, hash, (flow, state), *session_expires).await?;
            }
            if let Some(key) = key {
                upsert(conn, UPSERT_OUTCOME, hash, (key, outcome), *outcome_expires).await?;
            }
            Ok(Written::Finished(Finished::Recorded))
        }
        Write::Keep {
            flow,
            hash,
            outcome,
            outcome_expires,
            session,
            session_expires,
        } => {
            if let Some(state) = session {
                upsert(conn, UPSERT_SESSION, hash, (flow, state), *session_expires).await?;
            }
            if let Some((key, outcome)) = outcome {
                upsert(conn, UPSERT_OUTCOME, hash, (key, outcome), *outcome_expires).await?;
            }
            Ok(Written::Done)
        }
        Write::Claim {
            hash,
            key,
            now,
            lease,
        } => {
            let inserted = conn
                .execute(
                    "INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
                     VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING",
                    &[Arg::Text(hash.as_str()), Arg::Text(key), Arg::Int(*lease)],
                )
                .await?;
            if inserted == 1 {
                return Ok(Written::Claim(ClaimRow::Claimed));
            }
            let row: Option<(Option<String>, i64)> = conn
                .fetch_optional(
                    "SELECT outcome, expires_at FROM outcomes \
                     WHERE token_hash = $1 AND idempotency_key = $2",
                    &[Arg::Text(hash.as_str()), Arg::Text(key)],
                )
                .await?;
            let seen = match row {
                Some((Some(outcome), expires_at)) if expires_at > *now => {
                    return Ok(Written::Claim(ClaimRow::Done(outcome)));
                }
                Some((None, expires_at)) if expires_at > *now => {
                    return Ok(Written::Claim(ClaimRow::InProgress));
                }
                lapsed => lapsed.map(|(_, expires_at)| expires_at),
            };
            // Lapsed (or cleaned up in between): take it over, unless another call
            // just did — the compare on `expires_at` lets only one of them win.
            let taken = conn
                .execute(
                    "UPDATE outcomes SET outcome = NULL, expires_at = $3 \
                     WHERE token_hash = $1 AND idempotency_key = $2 AND expires_at = $4",
                    &[
                        Arg::Text(hash.as_str()),
                        Arg::Text(key),
                        Arg::Int(*lease),
                        Arg::Int(seen.unwrap_or(i64::MIN)),
                    ],
                )
                .await?;
            Ok(Written::Claim(if taken == 1 {
                ClaimRow::Claimed
            } else {
                ClaimRow::InProgress
            }))
        }
        Write::Release { hash, key } => {
            conn.execute(
                "DELETE FROM outcomes \
                 WHERE token_hash = $1 AND idempotency_key = $2 AND outcome IS NULL",
                &[Arg::Text(hash.as_str()), Arg::Text(key)],
            )
            .await?;
            Ok(Written::Done)
        }
        Write::Cleanup { now } => {
            let outcomes = conn
                .execute(
                    "DELETE FROM outcomes WHERE (token_hash, idempotency_key) IN \
                     (SELECT token_hash, idempotency_key FROM outcomes \
                      WHERE expires_at <= $1 LIMIT $2)",
                    &[Arg::Int(*now), Arg::Int(CLEANUP_BATCH)],
                )
                .await?;
            let sessions = conn
                .execute(
                    "DELETE FROM sessions WHERE token_hash IN \
                     (SELECT token_hash FROM sessions WHERE expires_at <= $1 LIMIT $2)",
                    &[Arg::Int(*now), Arg::Int(CLEANUP_BATCH)],
                )
                .await?;
            Ok(Written::Deleted(outcomes + sessions))
        }
    }
}

/// A completion under a key, on PostgreSQL: [`apply`]'s three statements for it (the
/// completion, unless the token has one; then the session deleted and the outcome
/// upserted) as one statement, one round trip where they took three. Each part after
/// the first runs only when the completion was inserted, as `apply` returns early when
/// it was not. PostgreSQL may run the parts in any order (in practice the outcome's
/// before the session's, the reverse of `apply` and `keep`): a `keep` racing it on the
/// same token and key, which only a claim taken over after its lease lapsed allows, may
/// meet it in a deadlock, which PostgreSQL breaks by failing one (`UNAVAILABLE`, retried).
#[cfg(feature = "postgres")]
const FINISH_COMPLETION: &str = "WITH done AS (\
     INSERT INTO completions (token_hash, flow, params, idempotency_key, completed_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO NOTHING RETURNING 1), \
     ended AS (DELETE FROM sessions WHERE token_hash = $1 AND EXISTS (SELECT 1 FROM done)), \
     kept AS (INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
     SELECT $1, $4, $6, $7 WHERE EXISTS (SELECT 1 FROM done) \
     ON CONFLICT (token_hash, idempotency_key) \
     DO UPDATE SET outcome = excluded.outcome, expires_at = excluded.expires_at) \
     SELECT EXISTS (SELECT 1 FROM done)";

/// A step's session and its outcome under its key, on PostgreSQL: [`apply`]'s two
/// upserts for a `keep` of both as one statement, atomic without a transaction, one round
/// trip where `BEGIN`, the upserts and `COMMIT` took four. Committed as the connection's
/// default has it (asynchronously, as a kept step always is). PostgreSQL may run the two
/// parts in either order; see [`FINISH_COMPLETION`] on a race with it.
#[cfg(feature = "postgres")]
const KEEP_BOTH: &str = "WITH kept AS (\
     INSERT INTO sessions (token_hash, flow, state, expires_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE \
     SET flow = excluded.flow, state = excluded.state, expires_at = excluded.expires_at) \
     INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
     VALUES ($1, $5, $6, $7) ON CONFLICT (token_hash, idempotency_key) \
     DO UPDATE SET outcome = excluded.outcome, expires_at = excluded.expires_at";

/// [`KEEP_BOTH`]'s values when `write` keeps both a session and an outcome; `None` for
/// every other write.
#[cfg(feature = "postgres")]
fn keep_in_one_statement(write: &Write) -> Option<[Arg<'_>; 7]> {
    match write {
        Write::Keep {
            flow,
            hash,
            outcome: Some((key, outcome)),
            outcome_expires,
            session: Some(state),
            session_expires,
        } => Some([
            Arg::Text(hash.as_str()),
            Arg::Text(flow),
            Arg::Text(state),
            Arg::Int(*session_expires),
            Arg::Text(key),
            Arg::Text(outcome),
            Arg::Int(*outcome_expires),
        ]),
        _ => None,
    }
}

/// [`FINISH_COMPLETION`]'s values when `write` is a completion under a key; `None` for
/// every other write, which [`apply`] runs.
#[cfg(feature = "postgres")]
fn completion_in_one_statement(write: &Write) -> Option<[Arg<'_>; 7]> {
    match write {
        Write::Finish {
            flow,
            hash,
            key: Some(key),
            completion: Some(params),
            outcome,
            outcome_expires,
            now,
            ..
        } => Some([
            Arg::Text(hash.as_str()),
            Arg::Text(flow),
            Arg::Text(params),
            Arg::Text(key),
            Arg::Int(*now),
            Arg::Text(outcome),
            Arg::Int(*outcome_expires),
        ]),
        _ => None,
    }
}

/// Runs `write` on a connection of `pool`, in a transaction of its own when it is several
/// statements or durable; a durable write on PostgreSQL asks for a synchronous commit.
pub(super) async fn on_pool(
    pool: &super::sql::Pool,
    write: &Write,
) -> Result<Written, sqlx::Error> {
    match pool {
        #[cfg(feature = "sqlite")]
        super::sql::Pool::Sqlite(pool) => {
            use sqlx::Connection;
            let mut conn = pool.acquire().await?;
            if !write.atomic() {
                return apply(&mut Conn::Sqlite(&mut conn), write).await;
            }
            let mut tx = conn.begin().await?;
            let written = apply(&mut Conn::Sqlite(&mut tx), write).await?;
            tx.commit().await?;
            Ok(written)
        }
        #[cfg(feature = "postgres")]
        super::sql::Pool::Postgres(pool) => {
            let mut held = super::pg::Held::get(pool).await?;
            let conn = held.conn();
            let written = if let Some(args) = keep_in_one_statement(write) {
                Conn::Postgres(conn).execute(KEEP_BOTH, &args).await?;
                Written::Done
            } else if !write.atomic() {
                apply(&mut Conn::Postgres(conn), write).await?
            } else {
                postgres_transaction(conn, write).await?
            };
            // Settled (a transaction committed): back to the pool. On any failure, or
            // the future dropped mid-way, `held` closes the connection instead.
            held.settle();
            Ok(written)
        }
    }
}

/// Runs `write` in a transaction of its own on `conn`: a durable one begun with its
/// synchronous commit (the connections' default is an asynchronous commit, see
/// `SqlStore::open`) in one simple query, and a completion under a key as
/// [`FINISH_COMPLETION`].
#[cfg(feature = "postgres")]
async fn postgres_transaction(
    conn: &mut PgConnection,
    write: &Write,
) -> Result<Written, sqlx::Error> {
    use sqlx::Connection;
    let mut tx = if write.durable() {
        conn.begin_with("BEGIN; SET LOCAL synchronous_commit = on")
            .await?
    } else {
        conn.begin().await?
    };
    let written = match completion_in_one_statement(write) {
        Some(args) => {
            let row: Option<(bool,)> = Conn::Postgres(&mut tx)
                .fetch_optional(FINISH_COMPLETION, &args)
                .await?;
            Written::Finished(match row {
                Some((true,)) => Finished::Recorded,
                Some((false,)) => Finished::AlreadyCompleted,
                // The statement ends in a SELECT of one row.
                None => return Err(sqlx::Error::RowNotFound),
            })
        }
        None => apply(&mut Conn::Postgres(&mut tx), write).await?,
    };
    tx.commit().await?;
    Ok(written)
}
