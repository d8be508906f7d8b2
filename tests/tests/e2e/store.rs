//! The store's backends — memory, a SQLite file and PostgreSQL — through one helper,
//! so that all of them pass the same cases.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flow_service::sdk::Outcome;
use flow_service::store::{self, Claim, Finished, MemoryStore, Opened, Store, StoreOptions};
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
    let dir = tempfile::tempdir().unwrap();
    let mut databases = vec![
        Database::Memory(MemoryStore::default()),
        Database::Sql {
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            _sqlite: Some(dir),
            _postgres: None,
        },
    ];
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

fn screen(n: u32) -> Outcome {
    Outcome::screen("NEXT", json!({"n": n}))
}

#[tokio::test]
async fn a_completion_is_recorded_once_and_survives_reopening() {
    check(|db| async move {
        let store = db.open().await;
        assert!(!store.is_completed("tok").await.unwrap());
        let done = Outcome::complete(json!({"email": "ada@example.com"}));
        assert_eq!(store.claim("tok", "k1").await.unwrap(), Claim::Claimed);
        assert_eq!(
            store
                .finish("signup", "tok", Some("k1"), &done, None)
                .await
                .unwrap(),
            Finished::Recorded
        );
        assert!(store.is_completed("tok").await.unwrap());
        assert!(!store.is_completed("other").await.unwrap());
        // A second completion of the token, under another key, writes nothing.
        let again = Outcome::complete(json!({"email": "eve@example.com"}));
        assert_eq!(
            store
                .finish("signup", "tok", Some("k2"), &again, None)
                .await
                .unwrap(),
            Finished::AlreadyCompleted
        );
        assert_eq!(store.claim("tok", "k2").await.unwrap(), Claim::Claimed);
        store.close().await;

        // A new connection sees the same (for SQL, as a new process would).
        let store = db.open().await;
        let completion = store.completion("tok").await.unwrap().unwrap();
        assert_eq!(completion.flow, "signup");
        assert_eq!(completion.params, json!({"email": "ada@example.com"}));
        assert_eq!(completion.idempotency_key, "k1");
        assert_eq!(store.claim("tok", "k1").await.unwrap(), Claim::Done(done));
    })
    .await;
}

#[tokio::test]
async fn a_repeated_key_gets_the_first_outcome() {
    check(|db| async move {
        let store = db.open().await;
        assert_eq!(store.claim("tok", "k").await.unwrap(), Claim::Claimed);
        // While the first call runs, the same call elsewhere waits its turn.
        assert_eq!(store.claim("tok", "k").await.unwrap(), Claim::InProgress);
        store
            .finish("f", "tok", Some("k"), &screen(1), None)
            .await
            .unwrap();
        for _ in 0..2 {
            assert_eq!(
                store.claim("tok", "k").await.unwrap(),
                Claim::Done(screen(1))
            );
        }
        // The same key of another token is another call.
        assert_eq!(store.claim("tok-2", "k").await.unwrap(), Claim::Claimed);
        // A released claim (the handler failed) lets a retry run it.
        store.release("tok-2", "k").await.unwrap();
        assert_eq!(store.claim("tok-2", "k").await.unwrap(), Claim::Claimed);
        // Releasing never removes a finished outcome.
        store.release("tok", "k").await.unwrap();
        assert_eq!(
            store.claim("tok", "k").await.unwrap(),
            Claim::Done(screen(1))
        );
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
                    store.claim("tok", &key).await.unwrap();
                    store.finish("f", "tok", Some(&key), &outcome, None).await
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
        let winner = replicas[0].completion("tok").await.unwrap().unwrap();
        let i = winner.params["call"].as_u64().unwrap();
        assert_eq!(winner.idempotency_key, format!("k{i}"));
    })
    .await;
}

#[tokio::test]
async fn sessions_live_until_they_expire_or_the_token_completes() {
    check(|db| async move {
        let store = db.open().await;
        assert_eq!(store.session("tok").await.unwrap(), Map::new());
        let mut state = Map::new();
        state.insert("department".into(), json!("cardiology"));
        store
            .finish("f", "tok", Some("k1"), &screen(1), Some(&state))
            .await
            .unwrap();
        assert_eq!(store.session("tok").await.unwrap(), state);
        assert_eq!(store.session("tok-2").await.unwrap(), Map::new());
        // Completing the token ends its session.
        store
            .finish("f", "tok", Some("k2"), &Outcome::complete(json!({})), None)
            .await
            .unwrap();
        assert_eq!(store.session("tok").await.unwrap(), Map::new());

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
            .finish("f", "tok-3", Some("k"), &screen(3), Some(&state))
            .await
            .unwrap();
        assert_eq!(short.session("tok-3").await.unwrap(), Map::new());
        // An expired outcome no longer answers: the call runs again.
        assert_eq!(short.claim("tok-3", "k").await.unwrap(), Claim::Claimed);
        short
            .finish("f", "tok-3", Some("k"), &screen(3), Some(&state))
            .await
            .unwrap();
        // The outcomes of tok (k1, k2), and tok-3's outcome and session, at least.
        assert!(short.cleanup_expired().await.unwrap() >= 2);
        assert_eq!(short.cleanup_expired().await.unwrap(), 0);
        assert!(short.is_completed("tok").await.unwrap());
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
        let opened = store.open_call("tok", Some("k1")).await.unwrap();
        assert_eq!(opened, Opened::default());

        let mut state = Map::new();
        state.insert("department".into(), json!("cardiology"));
        store
            .keep("f", "tok", Some("k1"), &screen(1), Some(&state))
            .await
            .unwrap();
        // Another process on the same data.
        let other = db.open().await;
        let opened = other.open_call("tok", Some("k1")).await.unwrap();
        assert_eq!(opened.session, state);
        assert!(!opened.completed);
        let shared = other.claims_calls();
        assert_eq!(shared, other.backend() != "sqlite");
        assert_eq!(opened.stored, shared.then(|| screen(1)));
        // Without a key, no outcome is looked up.
        assert_eq!(other.open_call("tok", None).await.unwrap().stored, None);

        // A completion is seen by every handle, with its outcome under its key.
        let done = Outcome::complete(json!({"email": "ada@example.com"}));
        assert_eq!(
            store
                .finish("f", "tok", Some("k2"), &done, None)
                .await
                .unwrap(),
            Finished::Recorded
        );
        let opened = other.open_call("tok", Some("k2")).await.unwrap();
        assert!(opened.completed);
        assert_eq!(opened.stored, Some(done));
        // Completing the token ended its session.
        assert_eq!(opened.session, Map::new());
        store.close().await;
        other.close().await;
    })
    .await;
}
