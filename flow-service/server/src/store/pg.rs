//! The PostgreSQL connection pool: deadpool's, over sqlx connections ([`PgPool`]), and
//! [`Held`], a connection taken from it that goes back only when its work settled.
//!
//! **Why not sqlx's own pool.** sqlx 0.9's pool pings every connection on its way back
//! (`Sync`, answered by the server; `sqlx-core`'s `pool/connection.rs`, unconditionally),
//! one round trip more for every statement: a plain step's two statements took four. It
//! pings so that a connection left mid-statement by a dropped future (a timeout) or broken
//! by an error does not go back as it is. Here a connection goes back only when what it
//! was given finished without an error ([`Held::settle`]); any other way, it is closed.
//! So nothing needs checking on the way back, and only a connection not handed out for
//! [`PING_WHEN_IDLE`] or more (long enough for the database to have restarted, or a link
//! to have dropped, unseen) is pinged before it is handed out again. As sqlx's pool did
//! by default, a connection not handed out for [`IDLE_TIMEOUT`] or open for
//! [`MAX_LIFETIME`] is closed ([`prune`], from the store's periodic cleanup). (deadpool
//! counts "last used" from when a connection was last handed out, which is never later
//! than when it came back: the pings and the pruning err on the safe side.)

use std::borrow::Cow;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleResult};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// How long a pooled connection may go without being handed out before it is pinged
/// again before use.
pub(super) const PING_WHEN_IDLE: Duration = Duration::from_secs(1);

/// Not handed out for this long, a connection is closed by [`prune`] (as sqlx's pool did
/// by default with idle ones).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Open this long, a connection is closed by [`prune`] once idle (as sqlx's pool did by
/// default), so that no server process lives for ever.
pub(super) const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The query parameters of a PostgreSQL URL that sqlx reads (sqlx-postgres 0.9,
/// `PgConnectOptions::parse_from_url`), beside `options[NAME]`.
const SQLX_PARAMS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// `url` without the query parameters sqlx does not read, and their names as they may
/// be shown (`***` for one that may be a secret gone astray: `super::shown_param_name`).
/// sqlx ignores such a parameter but logs it with its value at warn, so libpq's
/// `sslpassword` (a client key's passphrase, which sqlx cannot use) would put a secret
/// in the logs; left out here, nothing is lost. Names are compared percent-decoded, as
/// sqlx reads them. A URL the `url` crate cannot read comes back as it is (sqlx refuses
/// it with its own error, which shows no part of it).
pub(super) fn sqlx_params_only(url: &str) -> (Cow<'_, str>, Vec<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (Cow::Borrowed(url), Vec::new());
    };
    let Some(query) = parsed.query().map(str::to_owned) else {
        return (Cow::Borrowed(url), Vec::new());
    };
    let mut left_out = Vec::new();
    let kept: Vec<&str> = query
        .split('&')
        .filter(
            |pair| match form_urlencoded::parse(pair.as_bytes()).next() {
                Some((name, _))
                    if !SQLX_PARAMS.contains(&&*name) && !name.starts_with("options[") =>
                {
                    let shown = super::shown_param_name(pair).map(Cow::into_owned);
                    left_out.push(shown.unwrap_or_else(|| "***".to_owned()));
                    false
                }
                _ => true,
            },
        )
        .collect();
    if left_out.is_empty() {
        return (Cow::Borrowed(url), left_out);
    }
    let kept = kept.join("&");
    parsed.set_query(Some(kept.as_str()).filter(|kept| !kept.is_empty()));
    (Cow::Owned(parsed.into()), left_out)
}

/// Opens connections with the store's options, and pings one idle for a while.
#[derive(Debug)]
pub(super) struct Connector(pub(super) PgConnectOptions);

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.0).await
    }

    async fn recycle(
        &self,
        conn: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        // `last_used` counts from when the connection was last handed out.
        if metrics.last_used() >= PING_WHEN_IDLE {
            conn.ping().await?;
        }
        Ok(())
    }
}

/// A pool of at most `max` PostgreSQL connections, opened as needed. Waiting for one is
/// bounded by the caller (the store's timeout).
pub(super) type PgPool = managed::Pool<Connector>;

/// The pool for `connect`, its connections bounding each statement, and a transaction
/// left idle, by `timeout` (the store's) on the server's side too: a statement whose
/// caller gave up (its connection closed, another opened in its place) does not go on
/// running there for more than that, holding a server process and its locks. (Settings
/// of the same names in `connect` are overridden.)
pub(super) fn pool(connect: PgConnectOptions, max: u32, timeout: Duration) -> PgPool {
    // In milliseconds, as PostgreSQL takes them: at least 1 (0 would mean none), at most
    // what its setting holds (about 24 days).
    let timeout = timeout.as_millis().clamp(1, i32::MAX as u128).to_string();
    let connect = connect.options([
        ("statement_timeout", timeout.as_str()),
        ("idle_in_transaction_session_timeout", timeout.as_str()),
    ]);
    managed::Pool::builder(Connector(connect))
        .max_size(usize::try_from(max).unwrap_or(usize::MAX))
        // The connection used last goes out first: under a light load the same few are
        // used, stay warm (no ping), and the rest sit idle until pruned.
        .queue_mode(managed::QueueMode::Lifo)
        .build()
        .expect("a pool without timeouts of its own needs no runtime")
}

/// Closes the pool: the idle connections are closed politely (PostgreSQL is told), and
/// a connection in use is closed when it is dropped.
pub(super) async fn close(pool: &PgPool) {
    let idle = pool.retain(|_, _| false).removed;
    pool.close();
    close_politely(idle).await;
}

/// Closes the idle connections that sat idle for `idle` or were opened `lifetime` ago or
/// more ([`IDLE_TIMEOUT`] and [`MAX_LIFETIME`] from the store's periodic cleanup), telling
/// PostgreSQL; the pool opens new ones as needed.
pub(super) async fn prune(pool: &PgPool, idle: Duration, lifetime: Duration) {
    let old = pool
        .retain(|_, metrics| metrics.last_used() < idle && metrics.age() < lifetime)
        .removed;
    close_politely(old).await;
}

/// Closes `conns`, telling PostgreSQL, all at once and within a second (a server that
/// stopped reading does not hold the caller up a second per connection).
async fn close_politely(conns: Vec<PgConnection>) {
    let mut closing = tokio::task::JoinSet::new();
    for conn in conns {
        closing.spawn(tokio::time::timeout(Duration::from_secs(1), conn.close()));
    }
    while closing.join_next().await.is_some() {}
}

/// A connection taken from the pool, closed instead of pooled unless [`Held::settle`]
/// says its work finished: when a statement failed, or the future holding it was
/// dropped (the store's timeout) mid-way — even inside a transaction's `BEGIN`, which
/// sqlx would not know to roll back.
pub(super) struct Held(Option<Object<Connector>>);

impl Held {
    /// A connection from `pool`, waiting for one to be free.
    pub(super) async fn get(pool: &PgPool) -> Result<Held, sqlx::Error> {
        match pool.get().await {
            Ok(conn) => Ok(Held(Some(conn))),
            Err(PoolError::Backend(error)) => Err(error),
            Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            // Timeouts and hooks, which this pool does not have.
            Err(error) => Err(sqlx::Error::Protocol(format!("connection pool: {error}"))),
        }
    }

    /// The connection.
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        self.0.as_mut().expect("held until settled")
    }

    /// Its work finished: back to the pool.
    pub(super) fn settle(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            // Out of the pool (which opens another when needed), and closed.
            drop(Object::take(conn));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::Executor;

    use super::*;

    #[test]
    fn parameters_sqlx_does_not_read_are_left_out() {
        let url = "postgres://u:pw@db/x?sslmode=require&sslpassword=s3cret\
                   &connect%5Ftimeout=5&options[search_path]=s&application_name=a";
        let (kept, left_out) = sqlx_params_only(url);
        assert_eq!(
            kept,
            "postgres://u:pw@db/x?sslmode=require&options[search_path]=s&application_name=a"
        );
        assert_eq!(left_out, ["sslpassword", "connect_timeout"]);
        let (kept, left_out) = sqlx_params_only("postgres://db/x?keepalives=1");
        assert_eq!((&*kept, left_out.len()), ("postgres://db/x", 1));
        // Names that may be secrets gone astray are not shown.
        let (kept, left_out) =
            sqlx_params_only("postgres://db/x?s3cret&sslpassword%3Ds3cret&password=a&b");
        assert_eq!(kept, "postgres://db/x?password=a");
        assert_eq!(left_out, ["***", "***", "***"]);
        for url in [
            "postgres://u:pw@db/x",
            "postgres://db/x?sslmode=disable&user=u&password=p",
            "postgres://u:pa/ss@db/x?sslpassword=p",
        ] {
            let (kept, left_out) = sqlx_params_only(url);
            assert!(matches!(kept, Cow::Borrowed(_)), "{url}");
            assert_eq!((&*kept, left_out.len()), (url, 0));
        }
    }

    /// [`SQLX_PARAMS`] is the list of sqlx-postgres 0.9.0's `parse_from_url`: another
    /// version may read others, which the store would then leave out.
    #[test]
    fn the_parameters_sqlx_reads_are_those_of_the_version_locked() {
        let lock = include_str!("../../../../Cargo.lock");
        assert!(
            lock.contains("name = \"sqlx-postgres\"\nversion = \"0.9.0\"\n"),
            "sqlx-postgres is not 0.9.0: check SQLX_PARAMS against its parse_from_url"
        );
    }

    /// The test setting `name` (`scripts/test.sh` sets them, with the server it starts);
    /// unset, the test passes on with a notice, unless `CI` is set.
    fn test_setting(name: &str) -> Option<String> {
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => Some(value),
            _ if std::env::var_os("CI").is_some() => panic!("{name} is not set, and CI is"),
            _ => {
                eprintln!("SKIPPED: {name} is not set");
                None
            }
        }
    }

    /// The test PostgreSQL server (`FLOWGATE_TEST_POSTGRES_URL`).
    fn postgres() -> Option<PgConnectOptions> {
        test_setting("FLOWGATE_TEST_POSTGRES_URL")
            .map(|url| PgConnectOptions::from_str(&url).unwrap())
    }

    /// The test server's URL with `query` added, and the CA that signed the certificate
    /// it serves for TLS (`FLOWGATE_TEST_POSTGRES_CA`).
    fn postgres_tls(query: &str) -> Option<(String, String)> {
        let url = test_setting("FLOWGATE_TEST_POSTGRES_URL")?;
        let ca = test_setting("FLOWGATE_TEST_POSTGRES_CA")?;
        let joint = if url.contains('?') { '&' } else { '?' };
        Some((format!("{url}{joint}{query}"), ca))
    }

    /// Whether a held connection is encrypted, as the server sees it.
    async fn encrypted(held: &mut Held) -> bool {
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(held.conn())
            .await
            .unwrap()
    }

    /// A setting of a held connection's session, as `SHOW` prints it.
    async fn show(held: &mut Held, setting: &str) -> String {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(held.conn())
            .await
            .unwrap()
    }

    /// The server process of a held connection: the same one means the same connection.
    async fn backend(held: &mut Held) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(held.conn())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn only_a_settled_connection_goes_back_to_the_pool() {
        let Some(connect) = postgres() else { return };
        let pool = pool(connect, 1, Duration::from_secs(10));

        // Settled: the same connection again, as it was.
        let mut held = Held::get(&pool).await.unwrap();
        let first = backend(&mut held).await;
        held.settle();
        let mut held = Held::get(&pool).await.unwrap();
        assert_eq!(backend(&mut held).await, first);

        // Dropped inside a transaction sqlx does not know of: closed, never reused.
        held.conn().execute("BEGIN").await.unwrap();
        drop(held);
        let mut held = Held::get(&pool).await.unwrap();
        let second = backend(&mut held).await;
        assert_ne!(second, first);

        // Dropped mid-statement (a timeout): closed too, and the pool goes on.
        let sleeping = sqlx::query("SELECT pg_sleep(5)").execute(held.conn());
        let cut = tokio::time::timeout(Duration::from_millis(100), sleeping).await;
        assert!(cut.is_err(), "the statement was cut short");
        drop(held);
        let mut held = Held::get(&pool).await.unwrap();
        assert_ne!(backend(&mut held).await, second);

        // A failed statement's connection is not settled by its caller: closed as well.
        let third = backend(&mut held).await;
        let error = held.conn().execute("SELECT * FROM no_such_table").await;
        assert!(error.is_err());
        drop(held);
        let mut held = Held::get(&pool).await.unwrap();
        assert_ne!(backend(&mut held).await, third);

        // Pruning closes the connections idle or open for too long, and no other.
        let fourth = backend(&mut held).await;
        held.settle();
        prune(&pool, IDLE_TIMEOUT, MAX_LIFETIME).await;
        let mut held = Held::get(&pool).await.unwrap();
        assert_eq!(backend(&mut held).await, fourth);
        held.settle();
        prune(&pool, Duration::ZERO, MAX_LIFETIME).await;
        let mut held = Held::get(&pool).await.unwrap();
        let fifth = backend(&mut held).await;
        assert_ne!(fifth, fourth);
        held.settle();
        prune(&pool, IDLE_TIMEOUT, Duration::ZERO).await;
        let mut held = Held::get(&pool).await.unwrap();
        assert_ne!(backend(&mut held).await, fifth);
        held.settle();

        // Closing the pool closes its idle connections; later takers are refused.
        close(&pool).await;
        assert!(matches!(
            Held::get(&pool).await,
            Err(sqlx::Error::PoolClosed)
        ));
    }

    /// TLS as the URL asks for it (libpq's parameters): verified against the given CA,
    /// refused when the server's certificate cannot be verified, off when disabled.
    #[tokio::test]
    async fn the_url_asks_for_tls() {
        let Some((_, ca)) = postgres_tls("") else {
            return;
        };
        let pool_for = |query: String| {
            let (url, _) = postgres_tls(&query).unwrap();
            pool(
                PgConnectOptions::from_str(&url).unwrap(),
                1,
                Duration::from_secs(10),
            )
        };

        let verified = pool_for(format!("sslmode=verify-full&sslrootcert={ca}"));
        let mut held = Held::get(&verified).await.unwrap();
        assert!(encrypted(&mut held).await);

        let disabled = pool_for("sslmode=disable".into());
        let mut held = Held::get(&disabled).await.unwrap();
        assert!(!encrypted(&mut held).await);

        // The server's certificate is signed by the test's own CA, which the roots
        // trusted by default do not include.
        let (url, _) = postgres_tls("sslmode=verify-full").unwrap();
        let error = crate::store::connect(&url, crate::store::StoreOptions::default())
            .await
            .expect_err("an unverifiable server is refused");
        let error = error.to_string();
        assert!(error.contains("cannot connect"), "{error}");
        assert!(error.contains("UnknownIssuer"), "{error}");
    }

    #[tokio::test]
    async fn a_statement_is_bounded_on_the_server_too() {
        let Some(connect) = postgres() else { return };
        let pool = pool(connect, 1, Duration::from_millis(300));
        let mut held = Held::get(&pool).await.unwrap();
        assert_eq!(show(&mut held, "statement_timeout").await, "300ms");
        // The server cancels it, without the caller giving up.
        let error = sqlx::query("SELECT pg_sleep(5)")
            .execute(held.conn())
            .await
            .unwrap_err();
        let code = error.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("57014"), "{error}");
        assert_eq!(
            show(&mut held, "idle_in_transaction_session_timeout").await,
            "300ms"
        );

        // A store's timeout past what PostgreSQL's setting holds is its longest one, not a
        // setting every connection would be refused for.
        let Some(connect) = postgres() else { return };
        let pool = super::pool(connect, 1, Duration::from_secs(40 * 24 * 3600));
        let mut held = Held::get(&pool).await.unwrap();
        assert_eq!(show(&mut held, "statement_timeout").await, "2147483647ms");
    }
}
