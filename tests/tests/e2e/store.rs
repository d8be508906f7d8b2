//! The store's backends — memory, a SQLite file and PostgreSQL — through one helper,
//! so that all of them pass the same cases.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flow_service::sdk::Outcome;
use flow_service::store::{
    self, Claim, Finished, MemoryStore, Opened, Opening, Store, StoreError, StoreOptions, TokenKey,
};
use flowgate_e2e::PgSchema;
use serde_json::{Map, json};

/// A store's data for one test, deleted when dropped.
enum Database {
    /// The memory store's data, shared by every handle opened on it.
    Memory(MemoryStore),
    /// A SQLite file or a PostgreSQL schema.
    Sql {
        url: String,
        _sqlite: Option<tempfile::TempDir>,
        _postgres: Option<PgSchema>,
    },
}

impl Database {
    /// A fresh SQLite file.
    fn sqlite() -> Database {
        let dir = tempfile::tempdir().unwrap();
        Database::Sql {
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            _sqlite: Some(dir),
            _postgres: None,
        }
    }

    fn url(&self) -> &str {
        match self {
            Database::Memory(_) => "memory:",
            Database::Sql { url, .. } => url,
        }
    }

    /// A new handle on the data with default options: for SQL, a new pool, as
    /// another process (replica) would open it; for memory, another handle in this
    /// process.
    async fn open(&self) -> Arc<dyn Store> {
        self.open_with(StoreOptions::default()).await
    }

    async fn open_with(&self, options: StoreOptions) -> Arc<dyn Store> {
        match self {
            Database::Memory(data) => Arc::new(data.with_options(options)),
            Database::Sql { url, .. } => store::connect(url, options).await.unwrap(),
        }
    }
}

/// Runs `test` against a fresh memory store, a fresh SQLite file, then a fresh
/// PostgreSQL schema (unless the tests have no PostgreSQL outside CI; see
/// `flowgate_e2e::postgres_url`).
async fn check<F, Fut>(test: F)
where
    F: Fn(Arc<Database>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut databases = vec![Database::Memory(MemoryStore::default()), Database::sqlite()];
    if let Some(schema) = PgSchema::create().await {
        databases.push(Database::Sql {
            url: schema.url.clone(),
            _sqlite: None,
            _postgres: Some(schema),
        });
    }
    for database in databases {
        let database = Arc::new(database);
        eprintln!("backend: {}", database.open().await.backend());
        test(database).await;
    }
}

/// Runs `sql`, with `token`'s key as `$1`, on a connection of its own to the SQL
/// database `url`: a row written behind the store's back.
async fn write_as_another_process(url: &str, sql: &'static str, token: &TokenKey) {
    write_rows_as_another_process(url, sql, token, &[]).await;
}

/// [`write_as_another_process`] with more text values, bound to `$2`, `$3`….
async fn write_rows_as_another_process(
    url: &str,
    sql: &'static str,
    token: &TokenKey,
    texts: &[&str],
) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut other = sqlx::SqliteConnection::connect(url).await.unwrap();
        let mut query = sqlx::query(sql).bind(token.as_str());
        for text in texts {
            query = query.bind(*text);
        }
        query.execute(&mut other).await.unwrap();
    } else {
        let mut other = sqlx::PgConnection::connect(url).await.unwrap();
        let mut query = sqlx::query(sql).bind(token.as_str());
        for text in texts {
            query = query.bind(*text);
        }
        query.execute(&mut other).await.unwrap();
    }
}

/// The store's key of a flow token: what the call pipeline computes once per call.
fn key_of(token: &str) -> TokenKey {
    TokenKey::new(token)
}

fn screen(n: u32) -> Outcome {
    Outcome::screen("NEXT", json!({"n": n}))
}

#[tokio::test]
async fn a_completion_is_recorded_once_and_survives_reopening() {
    check(|db| async move {
        let store = db.open().await;
        assert!(!store.is_completed(&key_of("tok")).await.unwrap());
        let done = Outcome::complete(json!({"email": "ada@example.com"}));
        assert_eq!(
            store.claim(&key_of("tok"), "k1").await.unwrap(),
            Claim::Claimed
        );
        assert_eq!(
            store
                .finish("signup", &key_of("tok"), Some("k1"), &done, None)
                .await
                .unwrap(),
            Finished::Recorded
        );
        assert!(store.is_completed(&key_of("tok")).await.unwrap());
        assert!(!store.is_completed(&key_of("other")).await.unwrap());
        // A second completion of the token, under another key, writes nothing.
        let again = Outcome::complete(json!({"email": "eve@example.com"}));
        assert_eq!(
            store
                .finish("signup", &key_of("tok"), Some("k2"), &again, None)
                .await
                .unwrap(),
            Finished::AlreadyCompleted
        );
        assert_eq!(
            store.claim(&key_of("tok"), "k2").await.unwrap(),
            Claim::Claimed
        );
        store.close().await;

        // A new connection sees the same (for SQL, as a new process would).
        let store = db.open().await;
        let completion = store.completion(&key_of("tok")).await.unwrap().unwrap();
        assert_eq!(completion.flow, "signup");
        assert_eq!(completion.params, json!({"email": "ada@example.com"}));
        assert_eq!(completion.idempotency_key, "k1");
        assert_eq!(
            store.claim(&key_of("tok"), "k1").await.unwrap(),
            Claim::Done(done)
        );
    })
    .await;
}

/// A completion as earlier versions wrote it everywhere, with its outcome in `outcomes`
/// too, is answered from that row: the same key gets it, another is refused.
#[tokio::test]
async fn a_completion_with_its_outcome_in_outcomes_is_answered_from_there() {
    check(|db| async move {
        let Database::Sql { url, .. } = &*db else {
            return;
        };
        let store = db.open().await;
        let token = key_of("tok");
        // The two rows differ, to tell which one answers (times far ahead: unexpired).
        let stored = Outcome::complete(json!({"from": "outcomes"}));
        let completion = "INSERT INTO completions \
                          (token_hash, flow, params, idempotency_key, completed_at) \
                          VALUES ($1, 'f', '{\"from\": \"completions\"}', 'k', 4102444800000)";
        write_as_another_process(url, completion, &token).await;
        let outcome = "INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
                       VALUES ($1, 'k', $2, 4102444800000)";
        let json = serde_json::to_string(&stored).unwrap();
        write_rows_as_another_process(url, outcome, &token, &[&json]).await;

        let opened = store.open_call(&token, Some("k")).await.unwrap();
        assert_eq!(
            (opened.completed, &opened.stored),
            (true, &Some(stored.clone()))
        );
        assert_eq!(store.claim(&token, "k").await.unwrap(), Claim::Done(stored));
        let opened = store.open_call(&token, Some("k2")).await.unwrap();
        assert_eq!((opened.completed, opened.stored), (true, None));
    })
    .await;
}

/// A backlog of expired rows larger than a cleanup's batch goes whole, a batch at a time.
#[tokio::test]
async fn a_cleanup_backlog_goes_in_batches() {
    check(|db| async move {
        let Database::Sql { url, .. } = &*db else {
            return;
        };
        let store = db.open().await;
        // 12,001 claims whose lease ran out long ago, and two expired sessions.
        let backlog = "WITH RECURSIVE n(i) AS \
                       (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12001) \
                       INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
                       SELECT $1 || i, 'k', NULL, 1 FROM n";
        write_as_another_process(url, backlog, &key_of("tok")).await;
        let sessions = "INSERT INTO sessions (token_hash, flow, state, expires_at) \
                        VALUES ($1, 'f', '{}', 1), ($1 || '-2', 'f', '{}', 1)";
        write_as_another_process(url, sessions, &key_of("tok")).await;
        assert_eq!(store.cleanup_expired().await.unwrap(), 12_003);
        assert_eq!(store.cleanup_expired().await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_repeated_key_gets_the_first_outcome() {
    check(|db| async move {
        let store = db.open().await;
        assert_eq!(
            store.claim(&key_of("tok"), "k").await.unwrap(),
            Claim::Claimed
        );
        // While the first call runs, the same call elsewhere waits its turn.
        assert_eq!(
            store.claim(&key_of("tok"), "k").await.unwrap(),
            Claim::InProgress
        );
        store
            .finish("f", &key_of("tok"), Some("k"), &screen(1), None)
            .await
            .unwrap();
        for _ in 0..2 {
            assert_eq!(
                store.claim(&key_of("tok"), "k").await.unwrap(),
                Claim::Done(screen(1))
            );
        }
        // The same key of another token is another call.
        assert_eq!(
            store.claim(&key_of("tok-2"), "k").await.unwrap(),
            Claim::Claimed
        );
        // A released claim (the handler failed) lets a retry run it.
        store.release(&key_of("tok-2"), "k").await.unwrap();
        assert_eq!(
            store.claim(&key_of("tok-2"), "k").await.unwrap(),
            Claim::Claimed
        );
        // Releasing never removes a finished outcome.
        store.release(&key_of("tok"), "k").await.unwrap();
        assert_eq!(
            store.claim(&key_of("tok"), "k").await.unwrap(),
            Claim::Done(screen(1))
        );
    })
    .await;
}

/// A claim whose lease ran out (its caller died holding it) is taken over by exactly
/// one later claim, which then runs the call. (SQL only: the memory store's leases
/// cannot be aged from outside.)
#[tokio::test]
async fn a_lapsed_claim_is_taken_over_once() {
    check(|db| async move {
        let Database::Sql { url, .. } = &*db else {
            return;
        };
        let store = db.open().await;
        let token = key_of("tok");
        // What a caller that died leaves: a claim without an outcome, its lease over.
        let lapsed = "INSERT INTO outcomes (token_hash, idempotency_key, outcome, expires_at) \
                      VALUES ($1, 'k', NULL, 1)";
        write_as_another_process(url, lapsed, &token).await;
        // Taken over by a claim with its read too (on PostgreSQL, the one statement
        // finds the key there and the claim's own rules go on).
        assert_eq!(
            store.claim_and_open(&token, "k").await.unwrap(),
            Opening::Claimed(Opened::default())
        );
        // The taken-over claim holds a new lease: the same call elsewhere waits.
        assert_eq!(store.claim(&token, "k").await.unwrap(), Claim::InProgress);
        store
            .finish("f", &token, Some("k"), &screen(1), None)
            .await
            .unwrap();
        assert_eq!(
            store.claim(&token, "k").await.unwrap(),
            Claim::Done(screen(1))
        );
    })
    .await;
}

/// Claiming a key and reading what its call needs in one go: a new key is claimed
/// with the token's session; the same key elsewhere meanwhile is in progress, then
/// answered with its outcome; a completed token's new key is claimed and reads the
/// completion.
#[tokio::test]
async fn a_claim_reads_the_call_in_the_same_go() {
    check(|db| async move {
        let store = db.open().await;
        let token = key_of("tok");
        let mut state = Map::new();
        state.insert("department".into(), json!("cardiology"));
        store
            .keep("f", &token, None, &screen(0), Some(&state))
            .await
            .unwrap();
        let session = Opened {
            completed: false,
            stored: None,
            session: state.clone(),
        };
        assert_eq!(
            store.claim_and_open(&token, "k1").await.unwrap(),
            Opening::Claimed(session)
        );
        // Another process on the same data, while the call runs, then once it ended.
        let other = db.open().await;
        assert_eq!(
            other.claim_and_open(&token, "k1").await.unwrap(),
            Opening::InProgress
        );
        store
            .finish("f", &token, Some("k1"), &screen(1), Some(&state))
            .await
            .unwrap();
        assert_eq!(
            other.claim_and_open(&token, "k1").await.unwrap(),
            Opening::Done(screen(1))
        );
        let done = Outcome::complete(json!({"email": "ada@example.com"}));
        store
            .finish("f", &token, Some("k2"), &done, None)
            .await
            .unwrap();
        let completed = Opened {
            completed: true,
            ..Opened::default()
        };
        assert_eq!(
            other.claim_and_open(&token, "k3").await.unwrap(),
            Opening::Claimed(completed)
        );
        store.close().await;
        other.close().await;
    })
    .await;
}

/// A claim's read skips an expired session, and a claim whose read fails (a session
/// that is not JSON) is given up again: the call can be retried at once instead of
/// waiting for the claim's lease. (The corrupt row is written with SQL: SQL only.)
#[tokio::test]
async fn a_claim_whose_read_fails_is_given_up() {
    check(|db| async move {
        let short = StoreOptions {
            session_ttl: Duration::from_millis(1),
            ..StoreOptions::default()
        };
        let store = db.open_with(short).await;
        let token = key_of("tok");
        store
            .keep("f", &token, None, &screen(0), Some(&state(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store.claim_and_open(&token, "k0").await.unwrap(),
            Opening::Claimed(Opened::default())
        );
        store.close().await;

        let Database::Sql { url, .. } = &*db else {
            return;
        };
        let store = db.open().await;
        let broken = key_of("broken");
        let corrupt = "INSERT INTO sessions (token_hash, flow, state, expires_at) \
                       VALUES ($1, 'f', 'not json', 9000000000000)";
        write_as_another_process(url, corrupt, &broken).await;
        let error = store.claim_and_open(&broken, "k").await.unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Corrupt {
                    what: "session",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(store.claim(&broken, "k").await.unwrap(), Claim::Claimed);
        store.close().await;
    })
    .await;
}

/// Two replicas (two pools; for memory, two handles) on one database, many calls
/// racing to complete one token under different keys: exactly one wins.
#[tokio::test]
async fn racing_completions_have_one_winner() {
    check(|db| async move {
        let replicas = [db.open().await, db.open().await];
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let store = replicas[i % 2].clone();
                tokio::spawn(async move {
                    let key = format!("k{i}");
                    let outcome = Outcome::complete(json!({"call": i}));
                    store.claim(&key_of("tok"), &key).await.unwrap();
                    store
                        .finish("f", &key_of("tok"), Some(&key), &outcome, None)
                        .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.unwrap());
        }
        let recorded = results
            .iter()
            .filter(|r| matches!(r, Ok(Finished::Recorded)))
            .count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Ok(Finished::AlreadyCompleted)))
            .count();
        assert_eq!((recorded, refused), (1, 7), "{results:?}");
        let winner = replicas[0]
            .completion(&key_of("tok"))
            .await
            .unwrap()
            .unwrap();
        let i = winner.params["call"].as_u64().unwrap();
        assert_eq!(winner.idempotency_key, format!("k{i}"));
    })
    .await;
}

#[tokio::test]
async fn sessions_live_until_they_expire_or_the_token_completes() {
    check(|db| async move {
        let store = db.open().await;
        assert_eq!(store.session(&key_of("tok")).await.unwrap(), Map::new());
        let mut state = Map::new();
        state.insert("department".into(), json!("cardiology"));
        store
            .finish("f", &key_of("tok"), Some("k1"), &screen(1), Some(&state))
            .await
            .unwrap();
        assert_eq!(store.session(&key_of("tok")).await.unwrap(), state);
        assert_eq!(store.session(&key_of("tok-2")).await.unwrap(), Map::new());
        // Completing the token ends its session.
        store
            .finish(
                "f",
                &key_of("tok"),
                Some("k2"),
                &Outcome::complete(json!({})),
                None,
            )
            .await
            .unwrap();
        assert_eq!(store.session(&key_of("tok")).await.unwrap(), Map::new());

        // With lifetimes of zero, everything but completions expires at once and is
        // cleaned up.
        let short = db
            .open_with(StoreOptions {
                idempotency_ttl: Duration::ZERO,
                session_ttl: Duration::ZERO,
                ..StoreOptions::default()
            })
            .await;
        short
            .finish("f", &key_of("tok-3"), Some("k"), &screen(3), Some(&state))
            .await
            .unwrap();
        assert_eq!(short.session(&key_of("tok-3")).await.unwrap(), Map::new());
        // An expired outcome no longer answers: the call runs again.
        assert_eq!(
            short.claim(&key_of("tok-3"), "k").await.unwrap(),
            Claim::Claimed
        );
        short
            .finish("f", &key_of("tok-3"), Some("k"), &screen(3), Some(&state))
            .await
            .unwrap();
        // The outcomes of tok (k1, k2), and tok-3's outcome and session, at least.
        assert!(short.cleanup_expired().await.unwrap() >= 2);
        assert_eq!(short.cleanup_expired().await.unwrap(), 0);
        assert!(short.is_completed(&key_of("tok")).await.unwrap());
        // A completion's outcome under its key expires too (on SQLite it is the
        // completion's row, read within the same lifetime); the completion does not.
        let done = Outcome::complete(json!({"email": "ada@example.com"}));
        short
            .finish("f", &key_of("tok-4"), Some("k"), &done, None)
            .await
            .unwrap();
        let opened = short.open_call(&key_of("tok-4"), Some("k")).await.unwrap();
        assert_eq!((opened.completed, opened.stored), (true, None));
        assert_eq!(
            short.claim(&key_of("tok-4"), "k").await.unwrap(),
            Claim::Claimed
        );
    })
    .await;
}

/// What the call pipeline uses: one read before the handler (`open_call`) and, for a
/// step that completes nothing, `keep`. Kept sessions are seen by a new handle (another
/// process); kept outcomes are shared only where calls are claimed (PostgreSQL, memory).
#[tokio::test]
async fn one_read_opens_a_call_and_kept_steps_are_shared_as_claimed() {
    check(|db| async move {
        let store = db.open().await;
        let opened = store.open_call(&key_of("tok"), Some("k1")).await.unwrap();
        assert_eq!(opened, Opened::default());

        let mut state = Map::new();
        state.insert("department".into(), json!("cardiology"));
        store
            .keep("f", &key_of("tok"), Some("k1"), &screen(1), Some(&state))
            .await
            .unwrap();
        // Another process on the same data.
        let other = db.open().await;
        let opened = other.open_call(&key_of("tok"), Some("k1")).await.unwrap();
        assert_eq!(opened.session, state);
        assert!(!opened.completed);
        let shared = other.claims_calls();
        assert_eq!(shared, other.backend() != "sqlite");
        assert_eq!(opened.stored, shared.then(|| screen(1)));
        // Without a key, no outcome is looked up.
        assert_eq!(
            other.open_call(&key_of("tok"), None).await.unwrap().stored,
            None
        );

        // A completion is seen by every handle, with its outcome under its key.
        let done = Outcome::complete(json!({"email": "ada@example.com"}));
        assert_eq!(
            store
                .finish("f", &key_of("tok"), Some("k2"), &done, None)
                .await
                .unwrap(),
            Finished::Recorded
        );
        let opened = other.open_call(&key_of("tok"), Some("k2")).await.unwrap();
        assert!(opened.completed);
        assert_eq!(opened.stored, Some(done));
        // Completing the token ended its session.
        assert_eq!(opened.session, Map::new());
        store.close().await;
        other.close().await;
    })
    .await;
}

// A SQLite file has one writer, which takes the first write queued, then the file's
// write lock, then every write queued by then, and commits them in one transaction. The
// cases below hold the write lock from another connection while they queue their
// writes (one `join!`), so that the writer, waiting for the lock with the first, takes
// the rest into the same batch. Each case queues a durable write (`finish`) first: a
// batch that began without an fsync would end before it.

/// Another process's connection to a SQLite file, holding its write lock until released.
struct Lock(sqlx::SqliteConnection);

impl Lock {
    async fn take(db: &Database) -> Lock {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap();
        Lock(conn)
    }

    /// Releases the lock after a while, for the writes meanwhile to queue up.
    async fn release_later(self) {
        self.release_after(Duration::from_millis(300)).await
    }

    async fn release_after(mut self, wait: Duration) {
        tokio::time::sleep(wait).await;
        sqlx::query("COMMIT").execute(&mut self.0).await.unwrap();
    }
}

fn state(n: usize) -> Map<String, serde_json::Value> {
    let mut state = Map::new();
    state.insert("n".into(), json!(n));
    state
}

/// Many completions of distinct tokens at once, with steps between them: every one is
/// recorded, and is there for a new process on the file; writes queued before `close`
/// finish, later ones fail.
#[tokio::test]
async fn many_completions_at_once_all_land_in_the_sqlite_file() {
    let db = Database::sqlite();
    let store = db.open().await;
    let calls: Vec<_> = (0..300)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let token = key_of(&format!("tok-{i}"));
                if i % 3 == 0 {
                    let (step, state) = (screen(1), state(i));
                    let kept = store.keep("f", &token, None, &step, Some(&state));
                    kept.await.map(|()| None)
                } else {
                    let done = Outcome::complete(json!({"call": i}));
                    let key = format!("k{i}");
                    let finished = store.finish("f", &token, Some(&key), &done, None);
                    finished.await.map(Some)
                }
            })
        })
        .collect();
    for call in calls {
        let result = call.await.unwrap().unwrap();
        assert!(
            matches!(result, None | Some(Finished::Recorded)),
            "{result:?}"
        );
    }
    let last = Outcome::complete(json!({"call": "last"}));
    let (tok_last, tok_after) = (key_of("tok-last"), key_of("tok-after"));
    let (finished, ()) = tokio::join!(
        store.finish("f", &tok_last, None, &last, None),
        store.close()
    );
    assert_eq!(finished.unwrap(), Finished::Recorded);
    let error = store
        .finish("f", &tok_after, None, &last, None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("closed"), "{error}");

    let store = db.open().await;
    for i in 0..300 {
        let token = key_of(&format!("tok-{i}"));
        if i % 3 == 0 {
            assert_eq!(store.session(&token).await.unwrap(), state(i));
            assert!(!store.is_completed(&token).await.unwrap());
        } else {
            let completion = store.completion(&token).await.unwrap().unwrap();
            assert_eq!(completion.params, json!({"call": i}));
            assert_eq!(completion.idempotency_key, format!("k{i}"));
            let opened = store.open_call(&token, Some(&completion.idempotency_key));
            let stored = opened.await.unwrap().stored;
            assert_eq!(stored, Some(Outcome::complete(json!({"call": i}))));
        }
    }
    assert!(store.is_completed(&tok_last).await.unwrap());
    assert!(!store.is_completed(&tok_after).await.unwrap());
}

/// Completions of one token under different keys, committed in one batch: the first
/// queued is recorded, every other one writes nothing.
#[tokio::test]
async fn completions_of_one_token_in_one_batch_have_one_winner() {
    let db = Database::sqlite();
    let store = db.open().await;
    let lock = Lock::take(&db).await;
    let finish = |i: usize| {
        let store = store.clone();
        async move {
            let done = Outcome::complete(json!({"call": i}));
            store
                .finish("f", &key_of("tok"), Some(&format!("k{i}")), &done, None)
                .await
                .unwrap()
        }
    };
    let (a, b, c, d, ()) = tokio::join!(
        finish(0),
        finish(1),
        finish(2),
        finish(3),
        lock.release_later()
    );
    assert_eq!(
        [a, b, c, d],
        [
            Finished::Recorded,
            Finished::AlreadyCompleted,
            Finished::AlreadyCompleted,
            Finished::AlreadyCompleted
        ]
    );
    let completion = store.completion(&key_of("tok")).await.unwrap().unwrap();
    assert_eq!(
        (completion.params, completion.idempotency_key.as_str()),
        (json!({"call": 0}), "k0")
    );
    // The losers' outcomes were not stored under their keys either.
    let opened = store.open_call(&key_of("tok"), Some("k1")).await.unwrap();
    assert_eq!((opened.completed, opened.stored), (true, None));
}

/// Steps and a completion in one batch: each has its own effect, as if alone.
#[tokio::test]
async fn a_batch_of_steps_and_a_completion_commits_each() {
    let db = Database::sqlite();
    let store = db.open().await;
    let (tok_1, tok_2, tok_done) = (key_of("tok-1"), key_of("tok-2"), key_of("tok-done"));
    store
        .keep("f", &tok_done, None, &screen(0), Some(&state(0)))
        .await
        .unwrap();
    let lock = Lock::take(&db).await;
    let done = Outcome::complete(json!({"email": "ada@example.com"}));
    let (step, one, two) = (screen(1), state(1), state(2));
    let (finished, one, two, cleaned, ()) = tokio::join!(
        store.finish("f", &tok_done, Some("kd"), &done, None),
        store.keep("f", &tok_1, Some("k1"), &step, Some(&one)),
        store.keep("f", &tok_2, Some("k2"), &step, Some(&two)),
        store.cleanup_expired(),
        lock.release_later()
    );
    one.unwrap();
    two.unwrap();
    assert_eq!(finished.unwrap(), Finished::Recorded);
    assert_eq!(cleaned.unwrap(), 0);
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.session(&tok_1).await.unwrap(), state(1));
    assert_eq!(store.session(&tok_2).await.unwrap(), state(2));
    let opened = store.open_call(&tok_done, Some("kd")).await.unwrap();
    assert_eq!(
        opened,
        Opened {
            completed: true,
            stored: Some(done),
            session: Map::new(),
        }
    );
}

/// A write that the database refuses fails its whole batch: every caller in it gets the
/// error, nothing of the batch is written, and the next batch goes through.
#[tokio::test]
async fn a_write_failing_at_the_database_fails_its_batch_and_writes_nothing() {
    use sqlx::Connection;
    let db = Database::sqlite();
    let store = db.open().await;
    // The database itself refuses sessions of the flow `poison`.
    let mut other = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON sessions WHEN NEW.flow = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned session'); END",
    )
    .execute(&mut other)
    .await
    .unwrap();
    other.close().await.unwrap();

    let lock = Lock::take(&db).await;
    let done = Outcome::complete(json!({"order": 1}));
    let (step, one) = (screen(1), state(1));
    let (tok_a, tok_b, tok_c) = (key_of("tok-a"), key_of("tok-b"), key_of("tok-c"));
    let (finished, kept, poisoned, ()) = tokio::join!(
        store.finish("f", &tok_a, Some("k"), &done, None),
        store.keep("f", &tok_b, None, &step, Some(&one)),
        store.keep("poison", &tok_c, None, &step, Some(&one)),
        lock.release_later()
    );
    for error in [finished.map(drop), kept, poisoned] {
        let error = error.unwrap_err();
        assert!(matches!(error, StoreError::Query { .. }), "{error:?}");
        assert!(error.to_string().contains("poisoned session"), "{error}");
    }
    assert!(!store.is_completed(&tok_a).await.unwrap());
    assert_eq!(store.session(&tok_b).await.unwrap(), Map::new());

    // A retry without the refused write goes through.
    let (finished, kept) = tokio::join!(
        store.finish("f", &tok_a, Some("k"), &done, None),
        store.keep("f", &tok_b, None, &step, Some(&one)),
    );
    assert_eq!(finished.unwrap(), Finished::Recorded);
    kept.unwrap();
    assert!(store.is_completed(&tok_a).await.unwrap());
    assert_eq!(store.session(&tok_b).await.unwrap(), state(1));
}

/// When the writer cannot get the lock within its busy timeout (half the store's), the
/// write it was waiting with fails; a write queued meanwhile gets its own try, within
/// its own time.
#[tokio::test]
async fn a_write_that_waits_too_long_for_the_lock_fails_alone() {
    let db = Database::sqlite();
    let store = db
        .open_with(StoreOptions {
            timeout: Duration::from_millis(1000),
            ..StoreOptions::default()
        })
        .await;
    let lock = Lock::take(&db).await;
    let (first, second) = (key_of("tok-1"), key_of("tok-2"));
    let (step, one, two) = (screen(1), state(1), state(2));
    let (waited, queued, ()) = tokio::join!(
        // Taken at once; the lock is held past the writer's 500 ms busy timeout.
        store.keep("f", &first, None, &step, Some(&one)),
        async {
            // Queued while the writer waits for the lock with the first.
            tokio::time::sleep(Duration::from_millis(250)).await;
            store.keep("f", &second, None, &step, Some(&two)).await
        },
        lock.release_after(Duration::from_millis(700))
    );
    let error = waited.unwrap_err();
    assert!(error.to_string().contains("locked"), "{error}");
    queued.unwrap();
    assert_eq!(store.session(&first).await.unwrap(), Map::new());
    assert_eq!(store.session(&second).await.unwrap(), state(2));
}

/// Records are keyed by the token's SHA-256 in lowercase hex, as they always were: a
/// record an earlier version wrote is found, and what is written now is keyed the same.
#[tokio::test]
async fn sql_records_are_keyed_by_the_tokens_hex_sha256() {
    use sqlx::Connection;
    // SHA-256 of "tok" and of "old-tok" (`printf tok | sha256sum`).
    const TOK: &str = "1a7674eb4ee78df7e1ac439a93c3fa8e3c945784d4dec9fd8e3011738b2f1d62";
    const OLD_TOK: &str = "e994b5f76e12c52e41edbb41e3f2deb79da8be67afa3800e8eb3d5eb99ee526e";
    assert_eq!(key_of("tok").as_str(), TOK);
    let db = Database::sqlite();
    let store = db.open().await;
    store
        .keep("f", &key_of("tok"), None, &screen(1), Some(&state(1)))
        .await
        .unwrap();
    let mut other = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
    let (stored,): (String,) = sqlx::query_as("SELECT token_hash FROM sessions")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(stored, TOK);
    // A completion as written before, straight into the file.
    sqlx::query(
        "INSERT INTO completions (token_hash, flow, params, idempotency_key, completed_at) \
         VALUES ($1, 'f', '{}', 'k', 0)",
    )
    .bind(OLD_TOK)
    .execute(&mut other)
    .await
    .unwrap();
    other.close().await.unwrap();
    assert!(store.is_completed(&key_of("old-tok")).await.unwrap());
    assert!(!store.is_completed(&key_of("tok")).await.unwrap());
}

/// Opening the database at start is bounded by its own timeout, not by the bound on
/// calls: a PostgreSQL that takes the connection and never answers fails the start once
/// the connect timeout has passed, and a new SQLite file locked by another process is
/// opened once the lock is released, after far longer than the call timeout.
#[tokio::test]
async fn opening_the_database_is_bounded_by_the_connect_timeout() {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let options = StoreOptions {
        timeout: Duration::from_millis(50),
        connect_timeout: Duration::from_millis(600),
        ..StoreOptions::default()
    };
    let start = std::time::Instant::now();
    let url = format!("postgres://flowgate:hunter2@{addr}/flowgate");
    let Err(error) = store::connect(&url, options.clone()).await else {
        panic!("a database that never answers fails the start");
    };
    let waited = start.elapsed();
    held.abort();
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(
        waited >= Duration::from_millis(600),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "gave up after {waited:?}");

    // A new SQLite file, locked by another process while the store opens it: the
    // store waits for the lock, past its call timeout, within the connect timeout.
    let db = Database::sqlite();
    let mut other = sqlx::sqlite::SqliteConnectOptions::from_str(db.url())
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        other
    });
    let start = std::time::Instant::now();
    let store = db
        .open_with(StoreOptions {
            connect_timeout: Duration::from_secs(5),
            ..options
        })
        .await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    release.await.unwrap();
    assert_eq!(store.session(&key_of("tok")).await.unwrap(), Map::new());
}

/// A PostgreSQL URL with parameters sqlx does not read opens the store all the same,
/// and the URL rewritten without them (so that sqlx does not log their values; the
/// binary's test `a_parameter_sqlx_does_not_read_is_named_but_its_value_never_logged`
/// checks that) keeps the rest: the test schema's search path, in `options[…]`.
#[tokio::test]
async fn with_parameters_sqlx_does_not_read_the_rest_of_the_url_still_applies() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let url = format!("{}&sslpassword=s3cret&keepalives=1", schema.url);
    let store = store::connect(&url, StoreOptions::default()).await.unwrap();
    let mut state = Map::new();
    state.insert("department".into(), json!("cardiology"));
    store
        .keep("f", &key_of("tok"), None, &screen(1), Some(&state))
        .await
        .unwrap();
    // Seen through the schema's own URL: the session went to that schema.
    let other = store::connect(&schema.url, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(other.session(&key_of("tok")).await.unwrap(), state);
    store.close().await;
    other.close().await;
}
