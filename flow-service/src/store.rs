//! [`Store`]: where completions, call outcomes and sessions live — a SQLite file (the
//! embedded default) or PostgreSQL (several replicas), with the same behaviour.
//!
//! - A **completion** is one row per flow token, written in the same transaction as the
//!   call's outcome; the table's primary key makes a token single-use, so when two
//!   replicas race to complete one token the database picks exactly one winner.
//! - An **outcome** is stored per idempotency key: first as a claim (in progress), then
//!   as the answer. A repeated key gets the answer back, or, while the first call is
//!   still running, [`Claim::InProgress`], so a handler never runs twice for one call.
//! - A **session** is a JSON object per token that handlers keep between screens.
//!
//! Raw flow tokens never reach the database: rows are keyed by the token's hex
//! SHA-256. The SQL is portable (`flow-service/migrations/`), so both backends run the
//! same statements. Every operation is bounded by [`StoreOptions::timeout`]; a failure
//! is a [`StoreError`], which the service answers with `UNAVAILABLE` (HTTP 503).

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::sdk::Outcome;

/// The migrations of `flow-service/migrations/`, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long an in-progress call holds its idempotency key. A call whose process died
/// mid-way frees its key after this; until then a resend is answered `UNAVAILABLE`.
const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// Tunables of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bound on each store operation, including waiting for a connection or, with
    /// SQLite, for a lock. Past it the call fails with `UNAVAILABLE`, well before the
    /// gateway's deadline.
    pub timeout: Duration,
    /// How long a call's outcome is kept for retries and resends.
    pub idempotency_ttl: Duration,
    /// How long a session lives after its last change.
    pub session_ttl: Duration,
    /// Most connections a replica opens to PostgreSQL.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            session_ttl: Duration::from_secs(24 * 3600),
            max_connections: 10,
        }
    }
}

/// Why the store could not do what was asked. Messages name the operation and the
/// database's complaint, never a token or user data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL {0}: expected sqlite://PATH, sqlite::memory: or postgres://…"
    )]
    Url(String),
    // The database's complaint is part of the message rather than a `source`, so that
    // it is printed once whether or not the caller walks the chain.
    #[error("cannot connect to the database {url}: {error}")]
    Connect { url: String, error: sqlx::Error },
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database {op} failed: {error}")]
    Query {
        op: &'static str,
        error: sqlx::Error,
    },
    #[error("database {op} took longer than {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
    #[error("a stored {what} is not valid JSON: {error}")]
    Corrupt {
        what: &'static str,
        error: serde_json::Error,
    },
}

/// What [`Store::claim`] found under an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key is new (or its earlier claim lapsed): this call runs the handler.
    Claimed,
    /// The key's call finished: answer this.
    Done(Outcome),
    /// The key's call is still running elsewhere.
    InProgress,
}

/// What [`Store::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Recorded,
    /// The outcome was a completion, but the token had already been completed by
    /// another call: nothing was written.
    AlreadyCompleted,
}

/// A completion as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub flow: String,
    pub params: Value,
    pub idempotency_key: String,
    /// Unix milliseconds.
    pub completed_at: i64,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Completions, outcomes and sessions, in SQLite or PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    options: StoreOptions,
    /// The URL with any password masked, for logs.
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish()
    }
}

/// Runs the same statements on either backend, bounded by the store's timeout: the SQL
/// is portable, only the pool's type differs.
macro_rules! query {
    ($self:expr, $op:expr, |$pool:ident| $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($pool) => $self.bounded($op, $body).await,
            Pool::Postgres($pool) => $self.bounded($op, $body).await,
        }
    };
}

/// Runs the same expression on either backend's pool.
macro_rules! on_pool {
    ($self:expr, |$pool:ident| $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

impl Store {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` (created if missing), `sqlite::memory:` (gone with the process),
    /// or `postgres://USER:PASSWORD@HOST:PORT/DB` (also `postgresql://`). Fails when the
    /// database cannot be reached within [`StoreOptions::timeout`].
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let shown = redact(url);
        let connect_error = |error| StoreError::Connect {
            url: shown.clone(),
            error,
        };
        let pool = if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(connect_error)?
                .create_if_missing(true)
                // WAL lets readers go on while one writer commits.
                .journal_mode(SqliteJournalMode::Wal)
                // Half the bound: SQLite gives up waiting for a lock itself, rather
                // than leave a statement queued after its caller timed out.
                .busy_timeout(options.timeout / 2);
            let mut pool = SqlitePoolOptions::new().acquire_timeout(options.timeout);
            if memory {
                // An in-memory database lives as long as a connection to it: keep one.
                pool = pool
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            } else {
                pool = pool.max_connections(4);
            }
            Pool::Sqlite(pool.connect_with(connect).await.map_err(connect_error)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url).map_err(connect_error)?;
            // One connection first, so that a database that cannot be reached is
            // reported with its reason (refused, authentication…), not as a pool timeout.
            let first = tokio::time::timeout(options.timeout, PgConnection::connect_with(&connect))
                .await
                .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
                .map_err(connect_error)?;
            let _ = first.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.timeout);
            Pool::Postgres(pool.connect_lazy_with(connect))
        } else {
            return Err(StoreError::Url(shown));
        };
        let store = Store {
            pool,
            options,
            url: shown,
        };
        // Two replicas starting together are fine: sqlx serialises migrations with a
        // lock (an advisory lock on PostgreSQL).
        on_pool!(store, |pool| MIGRATOR.run(pool).await)?;
        Ok(store)
    }

    /// A private in-memory SQLite store: everything holds for the life of the process.
    pub async fn memory() -> Result<Self, StoreError> {
        Self::connect("sqlite::memory:", StoreOptions::default()).await
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// The database URL with any password masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Closes every connection; later operations fail.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }

    /// Bounds `work` by the store's timeout and names it in errors.
    async fn bounded<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let timeout = self.options.timeout;
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result.map_err(|error| StoreError::Query { op, error }),
            Err(_) => Err(StoreError::Timeout { op, timeout }),
        }
    }

    /// Whether `token` has been completed.
    pub async fn is_completed(&self, token: &str) -> Result<bool, StoreError> {
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
    pub async fn completion(&self, token: &str) -> Result<Option<Completion>, StoreError> {
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
    pub async fn claim(&self, token: &str, key: &str) -> Result<Claim, StoreError> {
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
    pub async fn release(&self, token: &str, key: &str) -> Result<(), StoreError> {
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
    pub async fn finish(
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
        query!(self, "finish", |pool| async {
            let mut tx = pool.begin().await?;
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
                sqlx::query(
                    "INSERT INTO sessions (token_hash, flow, state, expires_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE \
                         SET flow = excluded.flow, state = excluded.state, \
                             expires_at = excluded.expires_at",
                )
                .bind(&hash)
                .bind(flow)
                .bind(state)
                .bind(session_expires)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(key) = key {
                sqlx::query(
                        "INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash, idempotency_key) \
                         DO UPDATE SET outcome = excluded.outcome, expires_at = excluded.expires_at",
                    )
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
    pub async fn session(&self, token: &str) -> Result<Map<String, Value>, StoreError> {
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

    /// Deletes expired outcomes, claims and sessions; returns how many rows went.
    /// Completions are business records and are never deleted here.
    pub async fn cleanup_expired(&self) -> Result<u64, StoreError> {
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

/// How a flow token is keyed in the database: its hex SHA-256.
pub fn token_key(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    hex::encode(digest.as_ref())
}

/// `url` with the password, if any, replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or_default()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        for (url, shown) in [
            (
                "postgres://flowgate:s3cret@db:5432/flowgate",
                "postgres://flowgate:***@db:5432/flowgate",
            ),
            ("postgres://db/flowgate", "postgres://db/flowgate"),
            ("postgres://user@db/x", "postgres://user@db/x"),
            ("sqlite://flow-service.db", "sqlite://flow-service.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ] {
            assert_eq!(redact(url), shown);
        }
    }

    #[test]
    fn tokens_are_keyed_by_their_full_sha256() {
        let key = token_key("my_flow_token");
        assert_eq!(key.len(), 64);
        assert!(key.starts_with(&flowgate_proto::token_hash("my_flow_token")));
    }
}
