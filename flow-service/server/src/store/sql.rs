//! [`SqlStore`]: the store in SQLite (the `sqlite` feature: a file, the embedded default)
//! or PostgreSQL (the `postgres` feature: several replicas), with the same portable SQL
//! (`flow-service/migrations/`) on both.
//!
//! - The `completions` table's primary key makes a token single-use: a completion is
//!   written in the same transaction as the call's outcome, and when two replicas race
//!   to complete one token the database picks exactly one winner.
//! - An outcome row is first a claim (`outcome` NULL, held until `expires_at`), then the
//!   answer; a lapsed claim is taken over by a compare on `expires_at`, so only one
//!   caller wins it.
//! - Every operation is bounded by [`StoreOptions::timeout`].

use std::future::Future;
use std::str::FromStr;

use serde_json::{Map, Value};
#[cfg(feature = "postgres")]
use sqlx::Connection;
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    CLAIM_LEASE, Claim, Completion, Finished, Opened, Store, StoreError, StoreOptions, millis,
    now_ms, redact, token_key,
};
use crate::sdk::Outcome;

/// The migrations of `flow-service/migrations/`, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

/// Completions, outcomes and sessions, in SQLite or PostgreSQL. Cheap to clone: clones
/// share the connection pools.
#[derive(Clone)]
pub struct SqlStore {
    /// Durable commits: completions (and everything else but [`Store::open_call`] and
    /// [`Store::keep`]).
    pool: Pool,
    /// Where [`Store::open_call`] reads and [`Store::keep`] writes. For a SQLite file,
    /// a second pool whose commits skip the fsync (`synchronous=NORMAL`, WAL): they
    /// survive the process, not the machine. Otherwise the same pool as `pool`
    /// (PostgreSQL sets the commit's durability per transaction).
    fast: Pool,
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

/// A session's state, replacing any earlier one: token hash, flow, state, expiry.
const UPSERT_SESSION: &str = "INSERT INTO sessions (token_hash, flow, state, expires_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE \
     SET flow = excluded.flow, state = excluded.state, expires_at = excluded.expires_at";

/// A call's outcome, replacing its claim: token hash, key, outcome, expiry.
const UPSERT_OUTCOME: &str = "INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash, idempotency_key) \
     DO UPDATE SET outcome = excluded.outcome, expires_at = excluded.expires_at";

/// Runs the same statements on either backend, bounded by the store's timeout: the SQL
/// is portable, only the pool's type differs.
macro_rules! query {
    ($self:expr, $op:expr, |$pool:ident| $body:expr) => {
        query!($self, pool, $op, |$pool| $body)
    };
    ($self:expr, $which:ident, $op:expr, |$pool:ident| $body:expr) => {
        match &$self.$which {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($pool) => $self.bounded($op, $body).await,
            #[cfg(feature = "postgres")]
            Pool::Postgres($pool) => $self.bounded($op, $body).await,
        }
    };
}

/// Runs the same expression on either backend's pool.
macro_rules! on_pool {
    ($self:expr, |$pool:ident| $body:expr) => {
        match &$self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            Pool::Postgres($pool) => $body,
        }
    };
}

impl SqlStore {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` (created if missing), `sqlite::memory:` (gone with the process),
    /// or `postgres://USER:PASSWORD@HOST:PORT/DB` (also `postgresql://`), each when its
    /// feature is built. Fails when the database cannot be reached within
    /// [`StoreOptions::timeout`].
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let shown = redact(url);
        let (pool, fast) = Self::pools(url, &shown, &options).await?;
        let store = SqlStore {
            pool,
            fast,
            options,
            url: shown,
        };
        // Two replicas starting together are fine: sqlx serialises migrations with a
        // lock (an advisory lock on PostgreSQL).
        on_pool!(store, |pool| MIGRATOR.run(pool).await)
            .map_err(|error| StoreError::Migrate(error.into()))?;
        Ok(store)
    }

    /// The durable pool and the fast one (see [`SqlStore`]'s fields).
    async fn pools(
        url: &str,
        shown: &str,
        options: &StoreOptions,
    ) -> Result<(Pool, Pool), StoreError> {
        let connect_error = |error: sqlx::Error| StoreError::Connect {
            url: shown.to_owned(),
            error: error.into(),
        };
        #[cfg(feature = "sqlite")]
        if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(connect_error)?
                .create_if_missing(true)
                // WAL lets readers go on while one writer commits.
                .journal_mode(SqliteJournalMode::Wal)
                // Half the bound: SQLite gives up waiting for a lock itself, rather
                // than leave a statement queued after its caller timed out.
                .busy_timeout(options.timeout / 2);
            let pool = SqlitePoolOptions::new().acquire_timeout(options.timeout);
            if memory {
                // An in-memory database lives as long as a connection to it: keep one,
                // and one pool (a second would open another database).
                let pool = pool
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(connect)
                    .await
                    .map_err(connect_error)?;
                return Ok((Pool::Sqlite(pool.clone()), Pool::Sqlite(pool)));
            }
            // A commit of the durable pool is on disk when it returns (the WAL is
            // fsynced, and with it every commit before it); one of the fast pool is in
            // the WAL, which survives the process but not the machine.
            let durable = pool
                .clone()
                .max_connections(4)
                .connect_with(connect.clone().synchronous(SqliteSynchronous::Full))
                .await
                .map_err(connect_error)?;
            let fast = pool
                .max_connections(4)
                .connect_with(connect.synchronous(SqliteSynchronous::Normal))
                .await
                .map_err(connect_error)?;
            return Ok((Pool::Sqlite(durable), Pool::Sqlite(fast)));
        }
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Commits do not wait for the WAL flush unless a transaction asks for it
            // (`SET LOCAL synchronous_commit = on`, as every `finish` does): claims and
            // kept outcomes are visible to every replica at once, and a database crash
            // loses at most the last fraction of a second of them.
            let connect = PgConnectOptions::from_str(url)
                .map_err(connect_error)?
                .options([("synchronous_commit", "off")]);
            // One connection first, so that a database that cannot be reached is
            // reported with its reason (refused, authentication…), not as a pool timeout.
            let first = tokio::time::timeout(options.timeout, PgConnection::connect_with(&connect))
                .await
                .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
                .map_err(connect_error)?;
            let _ = first.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.timeout)
                .connect_lazy_with(connect);
            return Ok((Pool::Postgres(pool.clone()), Pool::Postgres(pool)));
        }
        Err(StoreError::Url(shown.to_owned()))
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Bounds `work` by the store's timeout and names it in errors.
    async fn bounded<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let timeout = self.options.timeout;
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result.map_err(|error| StoreError::Query {
                op,
                error: error.into(),
            }),
            Err(_) => Err(StoreError::Timeout { op, timeout }),
        }
    }
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => "postgres",
        }
    }

    fn url(&self) -> &str {
        &self.url
    }

    async fn close(&self) {
        on_pool!(self, |pool| pool.close().await);
        match &self.fast {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => pool.close().await,
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// Whether `token` has been completed.
    async fn is_completed(&self, token: &str) -> Result<bool, StoreError> {
        let hash = token_key(token);
        let row: Option<(i64,)> = query!(self, "completion lookup", |pool| async {
            sqlx::query_as("SELECT completed_at FROM completions WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.is_some())
    }

    /// The completion of `token`, if it has one.
    async fn completion(&self, token: &str) -> Result<Option<Completion>, StoreError> {
        let hash = token_key(token);
        let row: Option<(String, String, String, i64)> =
            query!(self, "completion lookup", |pool| async {
                sqlx::query_as(
                    "SELECT flow, params, idempotency_key, completed_at \
                         FROM completions WHERE token_hash = $1",
                )
                .bind(&hash)
                .fetch_optional(pool)
                .await
            })?;
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

    /// Looks up the call `key` of `token`, claiming it when it is new.
    async fn claim(&self, token: &str, key: &str) -> Result<Claim, StoreError> {
        let hash = token_key(token);
        let now = now_ms();
        let lease = now + millis(CLAIM_LEASE);
        let inserted = query!(self, "claim", |pool| async {
            sqlx::query(
                "INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
                         VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&hash)
            .bind(key)
            .bind(lease)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        if inserted == 1 {
            return Ok(Claim::Claimed);
        }
        let row: Option<(Option<String>, i64)> = query!(self, "outcome lookup", |pool| async {
            sqlx::query_as(
                "SELECT outcome, expires_at FROM outcomes \
                         WHERE token_hash = $1 AND idempotency_key = $2",
            )
            .bind(&hash)
            .bind(key)
            .fetch_optional(pool)
            .await
        })?;
        match row {
            Some((Some(outcome), expires_at)) if expires_at > now => {
                let outcome =
                    serde_json::from_str(&outcome).map_err(|error| StoreError::Corrupt {
                        what: "outcome",
                        error,
                    })?;
                Ok(Claim::Done(outcome))
            }
            Some((None, expires_at)) if expires_at > now => Ok(Claim::InProgress),
            // Lapsed (or cleaned up in between): take it over, unless another call
            // just did — the compare on `expires_at` lets only one of them win.
            lapsed => {
                let seen = lapsed.map(|(_, expires_at)| expires_at);
                let taken = query!(self, "claim takeover", |pool| async {
                    sqlx::query(
                                "UPDATE outcomes SET outcome = NULL, expires_at = $3 \
                                 WHERE token_hash = $1 AND idempotency_key = $2 AND expires_at = $4",
                            )
                            .bind(&hash)
                            .bind(key)
                            .bind(lease)
                            .bind(seen.unwrap_or(i64::MIN))
                            .execute(pool)
                            .await
                            .map(|done| done.rows_affected())
                })?;
                Ok(if taken == 1 {
                    Claim::Claimed
                } else {
                    Claim::InProgress
                })
            }
        }
    }

    /// Gives up the claim on `key` without an outcome (the handler failed), so that a
    /// retry runs the handler again.
    async fn release(&self, token: &str, key: &str) -> Result<(), StoreError> {
        let hash = token_key(token);
        query!(self, "claim release", |pool| async {
            sqlx::query(
                "DELETE FROM outcomes \
                     WHERE token_hash = $1 AND idempotency_key = $2 AND outcome IS NULL",
            )
            .bind(&hash)
            .bind(key)
            .execute(pool)
            .await
            .map(drop)
        })
    }

    /// Records what a call of `flow` for `token` answered, in one transaction: the
    /// completion (when `outcome` is one), the outcome under `key` (when given) and the
    /// session (when given; a completion deletes it instead, as the token is done).
    async fn finish(
        &self,
        flow: &str,
        token: &str,
        key: Option<&str>,
        outcome: &Outcome,
        session: Option<&Map<String, Value>>,
    ) -> Result<Finished, StoreError> {
        let hash = token_key(token);
        let now = now_ms();
        let outcome_json = serde_json::to_string(outcome).expect("an outcome serialises");
        let outcome_expires = now + millis(self.options.idempotency_ttl);
        let session_json = session.map(|s| Value::Object(s.clone()).to_string());
        let session_expires = now + millis(self.options.session_ttl);
        let completion = match outcome {
            Outcome::Complete { params } => Some(params.to_string()),
            _ => None,
        };
        let postgres = self.backend() == "postgres";
        query!(self, "finish", |pool| async {
            let mut tx = pool.begin().await?;
            if postgres {
                // The connections' default is an asynchronous commit (see `pools`).
                sqlx::query("SET LOCAL synchronous_commit = on")
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(params) = &completion {
                let inserted = sqlx::query(
                    "INSERT INTO completions \
                         (token_hash, flow, params, idempotency_key, completed_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO NOTHING",
                )
                .bind(&hash)
                .bind(flow)
                .bind(params)
                .bind(key.unwrap_or_default())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    tx.rollback().await?;
                    return Ok(Finished::AlreadyCompleted);
                }
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?;
            } else if let Some(state) = &session_json {
                sqlx::query(UPSERT_SESSION)
                    .bind(&hash)
                    .bind(flow)
                    .bind(state)
                    .bind(session_expires)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(key) = key {
                sqlx::query(UPSERT_OUTCOME)
                    .bind(&hash)
                    .bind(key)
                    .bind(&outcome_json)
                    .bind(outcome_expires)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Finished::Recorded)
        })
    }

    /// The session of `token`: an empty object when it has none or it expired.
    async fn session(&self, token: &str) -> Result<Map<String, Value>, StoreError> {
        let hash = token_key(token);
        let now = now_ms();
        let row: Option<(String,)> = query!(self, "session lookup", |pool| async {
            sqlx::query_as("SELECT state FROM sessions WHERE token_hash = $1 AND expires_at > $2")
                .bind(&hash)
                .bind(now)
                .fetch_optional(pool)
                .await
        })?;
        match row {
            None => Ok(Map::new()),
            Some((state,)) => serde_json::from_str(&state).map_err(|error| StoreError::Corrupt {
                what: "session",
                error,
            }),
        }
    }

    /// A claim is one more write per call; only PostgreSQL, with replicas on one
    /// database, needs it (see [`Store::claims_calls`]).
    fn claims_calls(&self) -> bool {
        self.backend() == "postgres"
    }

    /// One statement on the fast pool: the completion, the stored outcome and the
    /// session, each a scalar subquery on its table's primary key.
    async fn open_call(&self, token: &str, key: Option<&str>) -> Result<Opened, StoreError> {
        let hash = token_key(token);
        let now = now_ms();
        let row: (Option<i64>, Option<String>, Option<String>) =
            query!(self, fast, "call lookup", |pool| async {
                sqlx::query_as(
                    "SELECT \
                     (SELECT completed_at FROM completions WHERE token_hash = $1), \
                     (SELECT outcome FROM outcomes \
                      WHERE token_hash = $1 AND idempotency_key = $2 AND expires_at > $3), \
                     (SELECT state FROM sessions WHERE token_hash = $1 AND expires_at > $3)",
                )
                .bind(&hash)
                .bind(key.unwrap_or_default())
                .bind(now)
                .fetch_one(pool)
                .await
            })?;
        let (completed, outcome, state) = row;
        let stored =
            match (key, outcome) {
                (Some(_), Some(outcome)) => Some(serde_json::from_str(&outcome).map_err(
                    |error| StoreError::Corrupt {
                        what: "outcome",
                        error,
                    },
                )?),
                _ => None,
            };
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

    /// On the fast pool: on a SQLite file, the session alone (when given), committed
    /// without an fsync — the outcome stays in the process's memory; on PostgreSQL,
    /// the session and the outcome under `key`, in one asynchronous commit.
    async fn keep(
        &self,
        flow: &str,
        token: &str,
        key: Option<&str>,
        outcome: &Outcome,
        session: Option<&Map<String, Value>>,
    ) -> Result<(), StoreError> {
        let key = key.filter(|_| self.claims_calls());
        if key.is_none() && session.is_none() {
            return Ok(());
        }
        let hash = token_key(token);
        let now = now_ms();
        let outcome_json =
            key.map(|_| serde_json::to_string(outcome).expect("an outcome serialises"));
        let outcome_expires = now + millis(self.options.idempotency_ttl);
        let session_json = session.map(|s| Value::Object(s.clone()).to_string());
        let session_expires = now + millis(self.options.session_ttl);
        query!(self, fast, "keep", |pool| async {
            let session = session_json.as_deref().map(|state| {
                sqlx::query(UPSERT_SESSION)
                    .bind(&hash)
                    .bind(flow)
                    .bind(state)
                    .bind(session_expires)
            });
            let outcome = key.zip(outcome_json.as_deref()).map(|(key, outcome)| {
                sqlx::query(UPSERT_OUTCOME)
                    .bind(&hash)
                    .bind(key)
                    .bind(outcome)
                    .bind(outcome_expires)
            });
            match (session, outcome) {
                (Some(session), Some(outcome)) => {
                    let mut tx = pool.begin().await?;
                    session.execute(&mut *tx).await?;
                    outcome.execute(&mut *tx).await?;
                    tx.commit().await
                }
                // One statement is a transaction of its own.
                (Some(one), None) | (None, Some(one)) => one.execute(pool).await.map(drop),
                (None, None) => Ok(()),
            }
        })
    }

    /// Deletes expired outcomes, claims and sessions; returns how many rows went.
    /// Completions are business records and are never deleted here.
    async fn cleanup_expired(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        query!(self, "cleanup", |pool| async {
            let outcomes = sqlx::query("DELETE FROM outcomes WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(outcomes + sessions)
        })
    }
}
