//! [`Store`]: where completions, call outcomes and sessions live, behind one trait with
//! three backends of the same behaviour.
//!
//! - A **completion** is one record per flow token, written together with the call's
//!   outcome; it makes a token single-use, so when two calls race to complete one token
//!   exactly one wins. (Where calls are not claimed, on SQLite, the completion's row
//!   is that outcome too: its params under its key, for as long as an outcome is kept.)
//! - An **outcome** is stored per idempotency key: first as a claim (in progress), then
//!   as the answer. A repeated key gets the answer back, or, while the first call is
//!   still running, [`Claim::InProgress`], so a handler never runs twice for one call.
//!   The call pipeline claims keys here only where another process may run the same
//!   call ([`Store::claims_calls`]); within a process it runs one call once itself and
//!   keeps recent outcomes in memory (`crate::pipeline::Calls`).
//! - A **session** is a JSON object per token that handlers keep between screens.
//!
//! Per call the pipeline makes one read ([`Store::open_call`]: completion, stored
//! outcome, session) and at most one write: a completion with its outcome in one
//! durable transaction ([`Store::finish`]), or, for any other answer, the session's
//! changes (and on PostgreSQL the outcome) without waiting for the disk
//! ([`Store::keep`]). Where calls are claimed, the read comes with the claim
//! ([`Store::claim_and_open`]; on PostgreSQL one statement).
//!
//! A SQLite file has one writer: every write of the process goes to one task with one
//! connection, which runs the writes queued at that moment in one transaction and
//! answers each after the commit (group commit). The commit is fsynced when any of
//! them is a [`Store::finish`], so that each completion is on disk before its caller
//! hears back, and each write has the effect it would have alone; when one fails, all
//! of its batch fail and nothing of the batch is written.
//!
//! # What holds across a restart
//!
//! Of the flow service (the process stops, cleanly or not, and starts again):
//!
//! - **memory** (`memory:`): nothing. Every completion, outcome and session is gone.
//! - **SQLite file**: every completion and its outcome (committed with
//!   `synchronous=FULL` before `SUCCESS` leaves), so a completed token stays refused
//!   and a resent completion gets its `SUCCESS` again without its handler running;
//!   every session change (committed to the WAL with `synchronous=NORMAL`: it survives
//!   the process, but a power loss or OS crash may take the last ones). The outcomes
//!   of steps that completed nothing lived in the process's memory: after a restart a
//!   resend of such a step runs its handler again. A call the process died in the
//!   middle of left nothing.
//!   (`sqlite::memory:` keeps nothing, like `memory:`.)
//! - **PostgreSQL**: everything the other replicas see, as before the restart:
//!   completions and their outcomes (synchronous commits), the outcomes of every other
//!   step and the sessions (asynchronous commits: lost only if the database server
//!   itself crashes within a fraction of a second of them), and claims — a call cut
//!   off mid-way holds its key until [`CLAIM_LEASE`] lapses, and a resend meanwhile
//!   is answered `UNAVAILABLE`.
//!
//! What never holds in memory alone: a completion. Single use is the database's
//! primary key, for every replica on it.
//!
//! Backends, chosen by [`connect`]'s URL:
//! - [`MemoryStore`] (`memory:`) — in this process only, gone on exit: for developing
//!   and testing a flow. Always compiled; needs no database driver.
//! - [`SqlStore`] (`sqlite://PATH`, `sqlite::memory:` with the `sqlite` feature;
//!   `postgres://…` with the `postgres` feature) — the same portable SQL
//!   (`flow-service/migrations/`) on both. The database's keys make the guarantees hold
//!   between processes and replicas, and every operation is bounded by
//!   [`StoreOptions::timeout`] (a read of a SQLite file waits at most half of it for a
//!   lock, but runs on the caller's thread and cannot be cut short while it reads).
//!
//! Raw flow tokens are never stored, nor handed to a store: records are keyed by the
//! token's hex SHA-256 ([`TokenKey`]), which the caller computes once per call. A
//! failure is a [`StoreError`], which the service answers with `UNAVAILABLE` (HTTP 503).

#[cfg(feature = "sqlite")]
mod lite;
mod memory;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod write;
#[cfg(feature = "sqlite")]
mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::sdk::Outcome;

pub use memory::MemoryStore;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlStore;

/// How long an in-progress call holds its idempotency key. A call whose process died
/// mid-way frees its key after this; until then a resend is answered `UNAVAILABLE`.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// What the flow service keeps between calls. Every method is one atomic step: it
/// happens whole or not at all.
///
/// A token is named by its [`TokenKey`] — its hex SHA-256, the value every backend
/// stores — not by the token itself: the call pipeline hashes each call's token once
/// (it needs the digest for its span and single flight anyway) and hands the key to
/// every method, so a store never hashes it again, and the raw token never reaches it.
/// Earlier versions took `token: &str` and hashed it in each method; the key is the
/// same value they computed ([`token_key`]), so existing data is found as before.
/// A caller holding a token makes its key with [`TokenKey::new`].
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// `memory`, `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Where the data is, for logs: the database URL with any password masked.
    fn url(&self) -> &str;

    /// Whether `token` has been completed.
    async fn is_completed(&self, token: &TokenKey) -> Result<bool, StoreError>;

    /// The completion of `token`, if it has one.
    async fn completion(&self, token: &TokenKey) -> Result<Option<Completion>, StoreError>;

    /// Looks up the call `key` of `token`, claiming it when it is new or its earlier
    /// claim lapsed ([`CLAIM_LEASE`]). Of two calls claiming one key, one gets
    /// [`Claim::Claimed`].
    async fn claim(&self, token: &TokenKey, key: &str) -> Result<Claim, StoreError>;

    /// Gives up the claim on `key` without an outcome (the handler failed), so that a
    /// retry runs the handler again. A finished outcome is never removed.
    async fn release(&self, token: &TokenKey, key: &str) -> Result<(), StoreError>;

    /// Records what a call of `flow` for `token` answered, all or nothing: the
    /// completion (when `outcome` is one), the outcome under `key` (when given; a
    /// backend may keep a completion's outcome in the completion itself) and the
    /// session (when given; a completion deletes it instead, as the token is done).
    /// A completion of a token already completed writes nothing and is
    /// [`Finished::AlreadyCompleted`].
    async fn finish(
        &self,
        flow: &str,
        token: &TokenKey,
        key: Option<&str>,
        outcome: &Outcome,
        session: Option<&Map<String, Value>>,
    ) -> Result<Finished, StoreError>;

    /// The session of `token`: an empty object when it has none or it expired.
    async fn session(&self, token: &TokenKey) -> Result<Map<String, Value>, StoreError>;

    /// Whether the pipeline claims each call's idempotency key here
    /// ([`Store::claim_and_open`]) before its handler runs. True where another process
    /// may run the same call at the same time and must see the claim (PostgreSQL), and
    /// for the memory store, where a claim costs a lock; false for SQLite, where the
    /// process's own single flight stands in for the claim (a SQLite file is meant for
    /// one process; processes sharing one still complete a token once, through the
    /// completions' primary key, but each runs a resent step that completes nothing
    /// again).
    fn claims_calls(&self) -> bool;

    /// What a call of `token` needs before its handler runs, in one read: whether the
    /// token is completed, the outcome stored under `key` (when given) and the session.
    async fn open_call(&self, token: &TokenKey, key: Option<&str>) -> Result<Opened, StoreError>;

    /// [`Store::claim`] of `key`, then, when this call took it, [`Store::open_call`]
    /// without a key (just claimed, there is no outcome to find): the first two steps
    /// of a call where calls are claimed. A claim taken is given up again when the
    /// read fails, so that the call can be retried at once (should that fail too, the
    /// claim lapses with its lease). PostgreSQL claims and reads in one statement: one
    /// use of the pool where the two steps took two.
    async fn claim_and_open(&self, token: &TokenKey, key: &str) -> Result<Opening, StoreError> {
        claim_then_open(self, token, key).await
    }

    /// Keeps what a call that did not complete its token answered: the session (when
    /// given) and, where calls are claimed ([`Store::claims_calls`]), the outcome
    /// under `key`. Atomic, and visible to every process on the database at once, but
    /// not necessarily durable: see the module's "What holds across a restart".
    /// A completion goes through [`Store::finish`] instead.
    async fn keep(
        &self,
        flow: &str,
        token: &TokenKey,
        key: Option<&str>,
        outcome: &Outcome,
        session: Option<&Map<String, Value>>,
    ) -> Result<(), StoreError>;

    /// Deletes expired outcomes, claims and sessions; returns how many went.
    /// Completions are business records and are never deleted here.
    async fn cleanup_expired(&self) -> Result<u64, StoreError>;

    /// Closes the store's connections, if it has any; later operations may fail.
    async fn close(&self);
}

/// Opens the store `url` names and, for a database, brings its schema up to date:
///
/// - `memory:` — a new [`MemoryStore`], private to this process;
/// - `sqlite://PATH` (created if missing) or `sqlite::memory:` — with the `sqlite` feature;
/// - `postgres://USER:PASSWORD@HOST:PORT/DB` (also `postgresql://`) — with the
///   `postgres` feature.
///
/// Fails when the database cannot be reached within [`StoreOptions::connect_timeout`], or the
/// URL names a backend this build does not have.
pub async fn connect(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("memory:") {
        return Ok(Arc::new(MemoryStore::new(options)));
    }
    let feature = if url.starts_with("sqlite:") {
        "sqlite"
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        "postgres"
    } else {
        return Err(StoreError::Url(redact(url)));
    };
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    if (feature == "sqlite" && cfg!(feature = "sqlite"))
        || (feature == "postgres" && cfg!(feature = "postgres"))
    {
        return Ok(Arc::new(SqlStore::connect(url, options).await?));
    }
    Err(StoreError::NotBuilt {
        url: redact(url),
        feature,
    })
}

/// Tunables of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bound on each database operation, including waiting for a connection or, with
    /// SQLite, for a lock; a write to a SQLite file, for its turn with the writer and
    /// its batch's commit. Past it the call fails with `UNAVAILABLE`, well before the
    /// gateway's deadline. A read of a SQLite file runs on the caller's thread: it
    /// waits at most half of this for a lock (SQLite's busy timeout), but a disk that
    /// stalls stalls it. (The memory store never waits.)
    pub timeout: Duration,
    /// Bound on opening the database at start: the first connection to PostgreSQL and
    /// the migration of its schema; creating a SQLite file, its WAL and its schema, a
    /// lock held by another process included. Apart from [`timeout`](Self::timeout), so
    /// that a short bound on calls does not fail a start on a slow disk or a database
    /// still coming up. (`sqlite::memory:` and `memory:` open in the process.)
    pub connect_timeout: Duration,
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
            connect_timeout: Duration::from_secs(10),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            session_ttl: Duration::from_secs(24 * 3600),
            max_connections: 10,
        }
    }
}

/// A database driver's error, kept whole as the source of a [`StoreError`].
pub type DatabaseError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the store could not do what was asked. Messages name the operation and the
/// database's complaint, never a token or user data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL {0}: expected memory:, sqlite://PATH, sqlite::memory: or postgres://…"
    )]
    Url(String),
    #[error("database URL {url}: this build has no {feature} store (cargo feature `{feature}`)")]
    NotBuilt { url: String, feature: &'static str },
    // The database's complaint is part of the message rather than a `source`, so that
    // it is printed once whether or not the caller walks the chain.
    #[error("cannot connect to the database {url}: {error}")]
    Connect { url: String, error: DatabaseError },
    #[error("cannot migrate the database schema: {0}")]
    Migrate(DatabaseError),
    #[error("database {op} failed: {error}")]
    Query {
        op: &'static str,
        error: DatabaseError,
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

/// What [`Store::claim_and_open`] found under an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// The key is new (or its earlier claim lapsed): this call runs the handler, with
    /// what it read.
    Claimed(Opened),
    /// The key's call finished: answer this.
    Done(Outcome),
    /// The key's call is still running elsewhere.
    InProgress,
}

/// [`Store::claim_and_open`] as two steps, [`Store::claim`] then [`Store::open_call`].
async fn claim_then_open<S: Store + ?Sized>(
    store: &S,
    token: &TokenKey,
    key: &str,
) -> Result<Opening, StoreError> {
    match store.claim(token, key).await? {
        Claim::Claimed => match store.open_call(token, None).await {
            Ok(opened) => Ok(Opening::Claimed(opened)),
            Err(error) => {
                release_after_failed_read(store, token, key).await;
                Err(error)
            }
        },
        Claim::Done(outcome) => Ok(Opening::Done(outcome)),
        Claim::InProgress => Ok(Opening::InProgress),
    }
}

/// Gives up a claim just taken whose call cannot go on (its read failed); a failure
/// to do so is logged, and the claim then lapses with its lease.
async fn release_after_failed_read<S: Store + ?Sized>(store: &S, token: &TokenKey, key: &str) {
    if let Err(error) = store.release(token, key).await {
        tracing::warn!(%error, "could not release an idempotency key after its call's read failed");
    }
}

/// What [`Store::open_call`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opened {
    /// Whether the token is completed.
    pub completed: bool,
    /// The outcome stored under the call's key, when the call finished before.
    pub stored: Option<Outcome>,
    /// The token's session: empty when it has none or it expired.
    pub session: Map<String, Value>,
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

/// How a flow token is keyed in a store: its SHA-256 as 64 lowercase hex digits, the
/// `token_hash` column of every table. What the [`Store`] methods take in place of the
/// token, so that it is hashed once per call, by the caller ([`Store`]'s docs).
///
/// The digits are held inline: the key is `Copy`, and a copy (the memory store's map
/// keys) allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 64]);

impl TokenKey {
    /// The key of `token`.
    pub fn new(token: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut digits = [0; 64];
        hex::encode_to_slice(digest.as_ref(), &mut digits).expect("32 bytes are 64 hex digits");
        Self(digits)
    }

    /// How the token appears in logs and traces: the key's first 16 hex digits, the
    /// same as [`flowgate_proto::token_hash`] (the gateway's logs), computed without
    /// hashing again.
    pub fn log_hash(&self) -> &str {
        &self.as_str()[..16]
    }

    /// The key as stored: 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TokenKey").field(&self.as_str()).finish()
    }
}

/// [`TokenKey::new`] as a `String`: how a flow token is keyed in a store.
pub fn token_key(token: &str) -> String {
    TokenKey::new(token).as_str().to_owned()
}

/// Query parameters of a database URL that hold a secret, whatever their case:
/// libpq's `password`, which sqlx reads, and `sslpassword`, which it does not (and
/// which `pg::sqlx_params_only` leaves out of what it is given).
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// `url` with the password, if any, replaced by `***`: the one in its user part and
/// those given as query parameters, and no fragment after them; the rest as it was.
/// The URL is read with the `url` crate, as sqlx reads it. What cannot be told apart
/// for sure — text that is no URL, or one with an `@` whose user part cannot be read
/// (a `/`, `?` or `#` in the password ends the authority early, so that the password
/// reads as a port or a path) — is shown as its scheme alone (`postgres:***`), or as
/// `***` without one, when it has an `@`, `?` or `=`; else as it was.
pub fn redact(url: &str) -> String {
    let could_hold_secret = url.contains(['@', '?', '=']);
    let parsed = url::Url::parse(url).ok().filter(|parsed| {
        // An `@` that did not end a user part.
        !url.contains('@') || !parsed.username().is_empty() || parsed.password().is_some()
    });
    let Some(mut parsed) = parsed else {
        if !could_hold_secret {
            return url.to_owned();
        }
        return match url.split_once(':') {
            Some((scheme, _)) if is_scheme(scheme) => format!("{scheme}:***"),
            _ => "***".to_owned(),
        };
    };
    let mut masked = false;
    if parsed.password().is_some() {
        // Only a URL that cannot be a base has no password to set, and it has none.
        let _ = parsed.set_password(Some("***"));
        masked = true;
    }
    if let Some(query) = parsed.query() {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match shown_param_name(pair) {
                Some(name)
                    if SECRET_PARAMS
                        .iter()
                        .any(|secret| name.eq_ignore_ascii_case(secret)) =>
                {
                    masked = true;
                    format!("{name}=***")
                }
                Some(_) => pair.to_owned(),
                None if pair.is_empty() => String::new(),
                None => {
                    masked = true;
                    "***".to_owned()
                }
            })
            .collect();
        if masked {
            parsed.set_query(Some(&pairs.join("&")));
        }
    }
    if !masked {
        return url.to_owned();
    }
    // What follows a `#` in a password given as a parameter.
    parsed.set_fragment(None);
    parsed.into()
}

/// The name of a URL query `pair` as sqlx reads it (percent-decoded), when the pair
/// reads as a parameter fit to show: it has an `=`, and its name is 1 to 64 ASCII
/// letters, digits, `_`, `-`, `.`, `[` or `]`. Anything else may be a secret gone astray
/// (`?s3cret`; `?password=a&b` with the `&` unencoded; `?sslpassword%3Ds3cret`) and is
/// not shown.
pub(crate) fn shown_param_name(pair: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !pair.contains('=') {
        return None;
    }
    let (name, _) = form_urlencoded::parse(pair.as_bytes()).next()?;
    let fit = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b));
    fit.then_some(name)
}

/// Whether `text` is a URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Now, in Unix milliseconds: how every backend stamps and compares expiry.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or_default()
}

pub(crate) fn millis(duration: Duration) -> i64 {
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
            ("memory:", "memory:"),
            (
                "postgres://u:pw@db/x?sslmode=verify-full&password=pw&sslrootcert=/ca.pem",
                "postgres://u:***@db/x?sslmode=verify-full&password=***&sslrootcert=/ca.pem",
            ),
            (
                "postgres://db/x?pass%77ord=pw&sslpassword=pw&user=u",
                "postgres://db/x?password=***&sslpassword=***&user=u",
            ),
            // Characters a password may hold, percent-encoded or not.
            ("postgres://u:p%40ss@db/x", "postgres://u:***@db/x"),
            ("postgres://u:a@b@db/x", "postgres://u:***@db/x"),
            ("postgresql://u:pw@db/x", "postgresql://u:***@db/x"),
            (
                "postgres://db/x?PassWord=pw",
                "postgres://db/x?PassWord=***",
            ),
            // A `#` after a password given as a parameter may be part of it.
            (
                "postgres://db/x?password=ab#cd",
                "postgres://db/x?password=***",
            ),
            // Unreadable: a `/` ends the authority, so no host or port can be read.
            ("postgres://u:pa/ss@db/x", "postgres:***"),
            // A parameter that may be a secret gone astray.
            ("postgres://db/x?s3cret", "postgres://db/x?***"),
            (
                "postgres://db/x?sslpassword%3Ds3cret",
                "postgres://db/x?***",
            ),
            (
                "postgres://db/x?password=a&b&sslmode=require",
                "postgres://db/x?password=***&***&sslmode=require",
            ),
            (
                "postgres://db/x?options[search_path]=s&sslmode=require",
                "postgres://db/x?options[search_path]=s&sslmode=require",
            ),
            // Readable, with the password's start as a port: the `@` ends no user part.
            ("postgres://u:12/ss@db/x", "postgres:***"),
            ("postgres://u:5432#ss@db/x", "postgres:***"),
            ("postgres:u:pw@db/x", "postgres:***"),
            ("flowgate:s3cret@db:5432/flowgate", "flowgate:***"),
            // Not a URL: libpq's keywords, a forgotten scheme.
            ("host=db user=u password=pw", "***"),
            ("host=db password=p@ss:1", "***"),
            ("not a url", "not a url"),
            (
                "sqlite://./data/flow-service.db",
                "sqlite://./data/flow-service.db",
            ),
            (
                "sqlite:///var/lib/flow service.db",
                "sqlite:///var/lib/flow service.db",
            ),
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

    #[test]
    fn a_token_key_is_the_stored_hex_sha256() {
        // SHA-256("abc"), FIPS 180-2: the value the `token_hash` columns hold.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(TokenKey::new("abc").as_str(), abc);
        assert_eq!(token_key("abc"), abc);
        for token in ["my_flow_token", "", "v1.abc.def", "é"] {
            assert_eq!(
                TokenKey::new(token).log_hash(),
                flowgate_proto::token_hash(token)
            );
        }
        assert_eq!(
            TokenKey::new("my_flow_token").as_str(),
            token_key("my_flow_token")
        );
        assert_ne!(TokenKey::new("abc"), TokenKey::new("abd"));
        assert_eq!(
            format!("{:?}", TokenKey::new("abc")),
            format!("TokenKey({abc:?})")
        );
    }

    #[tokio::test]
    async fn urls_choose_the_backend() {
        let memory = connect("memory:", StoreOptions::default()).await.unwrap();
        assert_eq!((memory.backend(), memory.url()), ("memory", "memory:"));
        let error = connect("mysql://u:pw@db/x", StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Url(ref url) if url == "mysql://u:***@db/x"));
    }
}
