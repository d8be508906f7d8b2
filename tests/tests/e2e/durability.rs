//! Completions, idempotent retries, sessions, signed tokens and database outages,
//! end to end: HTTPS client → gateway → gRPC → flow service → SQLite or PostgreSQL.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use flow_service::server::ServeOptions;
use flow_service::service::TOKEN_NO_LONGER_VALID;
use flow_service::store::{self, StoreOptions, TokenKey};
use flow_service::tokens::{self, Secret, TokenPolicy};
use flowgate_e2e::{
    Gateway, GatewayOptions, PgSchema, Probe, Proxy, Service, ServiceOptions, test_serve_options,
    whatsapp,
};
use serde_json::{Value, json};

async fn stack(options: ServiceOptions) -> (Service, Gateway, Probe) {
    let probe = Probe::default();
    let service = Service::start_with(probe.clone(), options).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    (service, gateway, probe)
}

fn refused() -> (u16, Value) {
    (427, json!({"error_msg": TOKEN_NO_LONGER_VALID}))
}

fn success(token: &str, params: Value) -> (u16, Value) {
    let mut params = params;
    params["flow_token"] = json!(token);
    (
        200,
        json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": params}}}),
    )
}

/// After a completion, every request with the token is refused — except the same
/// completion resent after a lost answer, which gets the same SUCCESS again without
/// running the handler twice.
#[tokio::test]
async fn a_completed_token_is_single_use_and_its_completion_idempotent() {
    let (_service, gateway, probe) = stack(ServiceOptions::default()).await;
    let path = "/flows/probe";
    assert_eq!(
        gateway
            .post(path, &whatsapp("INIT", "tok", "", json!({})))
            .await
            .0,
        200
    );
    let done = whatsapp("data_exchange", "tok", "DONE", json!({"order": 7}));
    for _ in 0..2 {
        assert_eq!(
            gateway.post(path, &done).await,
            success("tok", json!({"order": 7}))
        );
    }
    assert_eq!(probe.completions(), 1);
    let runs = probe.runs();
    for request in [
        whatsapp("INIT", "tok", "", json!({})),
        whatsapp("INIT", "tok", "", json!({"fresh": true})),
        whatsapp("data_exchange", "tok", "ANY", json!({"n": 1})),
        whatsapp("BACK", "tok", "ANY", json!({})),
        whatsapp("data_exchange", "tok", "DONE", json!({"order": 8})),
    ] {
        assert_eq!(gateway.post(path, &request).await, refused(), "{request}");
    }
    assert_eq!(probe.runs(), runs, "no handler ran for a completed token");
    // Error notifications about the token are still acknowledged.
    let notice = whatsapp("data_exchange", "tok", "ANY", json!({"error": "x"}));
    assert_eq!(gateway.post(path, &notice).await.0, 200);

    // The same through the default flow: the sign-up journey, once. The route is part
    // of the call, so the same body on the flow's own path is another call.
    let email = json!({"email": "ada@example.com"});
    let confirm = whatsapp("data_exchange", "s-1", "CONFIRMATION_SCREEN", email.clone());
    for _ in 0..2 {
        assert_eq!(
            gateway.post("/flow-endpoint", &confirm).await,
            success("s-1", email.clone())
        );
    }
    assert_eq!(gateway.post("/flows/signup", &confirm).await, refused());
    assert_eq!(
        gateway
            .post("/flow-endpoint", &whatsapp("INIT", "s-1", "", json!({})))
            .await,
        refused()
    );
}

/// What a handler keeps in the session is there on the next screen, for that token only.
#[tokio::test]
async fn sessions_carry_state_between_screens() {
    let (_service, gateway, _) = stack(ServiceOptions::default()).await;
    let path = "/flows/probe";
    let remember = whatsapp(
        "data_exchange",
        "tok",
        "REMEMBER",
        json!({"department": "cardiology"}),
    );
    assert_eq!(gateway.post(path, &remember).await.0, 200);
    let recall = |token| whatsapp("data_exchange", token, "RECALL", json!({}));
    assert_eq!(
        gateway.post(path, &recall("tok")).await,
        (
            200,
            json!({"screen": "RECALL", "data": {"department": "cardiology"}})
        )
    );
    assert_eq!(
        gateway.post(path, &recall("other")).await,
        (200, json!({"screen": "RECALL", "data": {}}))
    );
}

/// A completion written to the SQLite file is there after the service restarts, and so
/// is its outcome for a resend.
#[tokio::test]
async fn a_completion_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flows.db").display());
    let done = whatsapp("data_exchange", "tok", "DONE", json!({"order": 1}));
    let (service, gateway, _) = stack(ServiceOptions::database(&url)).await;
    assert_eq!(
        gateway.post("/flows/probe", &done).await,
        success("tok", json!({"order": 1}))
    );
    service.kill().await;
    drop(gateway);

    the_completion_holds_on(&url, &done).await;
}

/// A new service on `url` refuses the token `tok`, completed by `done` with
/// `{"order": 1}`, and answers `done` resent from the store, its handler not run.
async fn the_completion_holds_on(url: &str, done: &Value) {
    let (_service, gateway, probe) = stack(ServiceOptions::database(url)).await;
    assert_eq!(
        gateway
            .post("/flows/probe", &whatsapp("INIT", "tok", "", json!({})))
            .await,
        refused()
    );
    assert_eq!(
        gateway.post("/flows/probe", done).await,
        success("tok", json!({"order": 1}))
    );
    assert_eq!(probe.runs(), 0);
}

/// A service serving with `close_store` (as the binary does) that stops gracefully
/// leaves its SQLite file whole: the file alone, copied without its `-wal` and `-shm`
/// companions (as a backup of the one file would be), still refuses the completed
/// token and answers its resend. The test holds the store too, so only the server's
/// closing it can take the log in.
#[tokio::test]
async fn a_stopped_service_leaves_everything_in_its_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.db");
    let url = format!("sqlite://{}", file.display());
    let store = store::connect(&url, StoreOptions::default()).await.unwrap();
    let flows = flow_service::flows::reference()
        .strict(true)
        .register("probe", Probe::default())
        .store(store.clone());
    let options = ServeOptions {
        close_store: true,
        ..test_serve_options()
    };
    let service = Service::serve_with("127.0.0.1:0".parse().unwrap(), flows, None, options).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    let done = whatsapp("data_exchange", "tok", "DONE", json!({"order": 1}));
    assert_eq!(
        gateway.post("/flows/probe", &done).await,
        success("tok", json!({"order": 1}))
    );
    service.stop().await;
    drop(gateway);
    assert!(
        !dir.path().join("flows.db-wal").exists(),
        "the write-ahead log is taken into the file at a graceful stop"
    );
    assert!(
        store.is_completed(&TokenKey::new("tok")).await.is_err(),
        "the store is closed"
    );

    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&file, copy.path().join("flows.db")).unwrap();
    let url = format!("sqlite://{}", copy.path().join("flows.db").display());
    the_completion_holds_on(&url, &done).await;
}

/// A call whose caller went away runs on by itself (here a completion without a
/// deadline, whose caller gives up while the handler still works); a graceful stop
/// waits for it before closing the store, so that its completion is in the file.
#[tokio::test]
async fn a_stop_waits_for_a_call_whose_caller_went_away() {
    use flowgate_proto::v1::{self, flow_service_client::FlowServiceClient};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flows.db").display());
    let probe = Probe::default();
    let flows = flow_service::flows::reference()
        .strict(true)
        .register("probe", probe.clone())
        .store(store::connect(&url, StoreOptions::default()).await.unwrap());
    let options = ServeOptions {
        close_store: true,
        ..test_serve_options()
    };
    let service = Service::serve_with("127.0.0.1:0".parse().unwrap(), flows, None, options).await;
    let data = json!({"ms": 1200});
    let request = v1::DataExchangeRequest {
        context: Some(v1::RequestContext {
            idempotency_key: "key".into(),
            ..crate::grpc::context("probe").unwrap()
        }),
        flow_token: "tok".into(),
        screen: "DONE".into(),
        data: Some(
            flowgate_proto::json::struct_from_json(data.as_object().unwrap(), "data").unwrap(),
        ),
    };
    let mut client = FlowServiceClient::new(crate::grpc::channel(&service).await);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), client.data_exchange(request))
            .await
            .is_err(),
        "the caller gives up before the handler is done"
    );
    drop(client);
    service.stop().await;
    assert_eq!(probe.completions(), 1, "the handler ran to its end");
    let reopened = store::connect(&url, StoreOptions::default()).await.unwrap();
    let completion = reopened
        .completion(&TokenKey::new("tok"))
        .await
        .unwrap()
        .expect("the completion was written before the store closed");
    assert_eq!(completion.params["ms"], 1200);
}

/// Two replicas sharing one PostgreSQL database, each behind its own gateway.
async fn replicas(schema: &PgSchema) -> [(Service, Gateway, Probe); 2] {
    [
        stack(ServiceOptions::database(&schema.url)).await,
        stack(ServiceOptions::database(&schema.url)).await,
    ]
}

/// Two replicas racing to complete one token:
/// - with different data (different idempotency keys: two submissions), exactly one
///   completes and the other is refused with 427;
/// - with the same request (same key: WhatsApp resending while the first is still
///   running), the handler runs once; the second is told to retry (503) while the
///   first runs, and gets the same SUCCESS once it finished.
#[tokio::test]
async fn replicas_racing_to_complete_a_token_complete_it_once() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let [(_s1, g1, p1), (_s2, g2, p2)] = replicas(&schema).await;
    let path = "/flows/probe";

    let first = whatsapp(
        "data_exchange",
        "tok-a",
        "DONE",
        json!({"ms": 300, "by": 1}),
    );
    let second = whatsapp(
        "data_exchange",
        "tok-a",
        "DONE",
        json!({"ms": 300, "by": 2}),
    );
    let (a, b) = tokio::join!(g1.post(path, &first), g2.post(path, &second));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 427], "{a:?} {b:?}");
    let (winner, body) = if a.0 == 200 { (1, a.1) } else { (2, b.1) };
    assert_eq!(
        body["data"]["extension_message_response"]["params"]["by"],
        winner
    );
    let store = store::connect(&schema.url, StoreOptions::default())
        .await
        .unwrap();
    let completion = store
        .completion(&TokenKey::new("tok-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(completion.params["by"], winner);

    let same = whatsapp("data_exchange", "tok-b", "DONE", json!({"ms": 500}));
    let before = p1.completions() + p2.completions();
    let (a, b) = tokio::join!(g1.post(path, &same), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        g2.post(path, &same).await
    });
    let expected = success("tok-b", json!({"ms": 500}));
    assert_eq!(a, expected);
    assert_eq!(b.0, 503, "{b:?}");
    assert_eq!(g2.post(path, &same).await, expected);
    assert_eq!(g1.post(path, &same).await, expected);
    assert_eq!(p1.completions() + p2.completions() - before, 1);
}

const SECRET: &[u8] = b"a test secret of at least 32 bytes!";

/// Under the `signed` policy only tokens issued for the flow, unexpired and untouched,
/// open it.
#[tokio::test]
async fn the_signed_policy_refuses_forged_stale_and_foreign_tokens() {
    let secret = Secret::new(SECRET).unwrap();
    let (_service, gateway, probe) = stack(ServiceOptions {
        tokens: TokenPolicy::Signed(secret.clone()),
        ..ServiceOptions::default()
    })
    .await;
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let valid = tokens::issue(&secret, "probe", Some("customer-7"), hour, now);
    let (status, body) = gateway
        .post("/flows/probe", &whatsapp("INIT", &valid, "", json!({})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["subject"], "customer-7");
    // The default flow (`signup`) takes a token issued for `signup`.
    let signup = tokens::issue(&secret, "signup", None, hour, now);
    assert_eq!(
        gateway
            .post("/flow-endpoint", &whatsapp("INIT", &signup, "", json!({})))
            .await
            .1["screen"],
        "WELCOME_SCREEN"
    );

    let (signed, mac) = valid.rsplit_once('.').unwrap();
    let flipped = if mac.starts_with('A') { "B" } else { "A" };
    let other_secret = Secret::new(&[9u8; 32]).unwrap();
    let runs = probe.runs();
    for (case, token) in [
        ("unsigned", "tok-1".to_owned()),
        ("tampered", format!("{signed}.{flipped}{}", &mac[1..])),
        (
            "expired",
            tokens::issue(&secret, "probe", None, hour, now - 2 * hour),
        ),
        ("other flow", signup.clone()),
        (
            "other secret",
            tokens::issue(&other_secret, "probe", None, hour, now),
        ),
    ] {
        for request in [
            whatsapp("INIT", &token, "", json!({})),
            whatsapp("data_exchange", &token, "DONE", json!({})),
            whatsapp("BACK", &token, "", json!({})),
        ] {
            assert_eq!(
                gateway.post("/flows/probe", &request).await,
                refused(),
                "{case}: {request}"
            );
        }
    }
    assert_eq!(probe.runs(), runs, "no handler ran for a refused token");
    // Error notifications are acknowledged whatever the token.
    let notice = whatsapp("INIT", "tok-1", "", json!({"error": "x"}));
    assert_eq!(gateway.post("/flows/probe", &notice).await.0, 200);
}

/// The network to PostgreSQL goes away mid-run: calls are answered 503 at once, nothing
/// is half-written, and service resumes when it comes back.
#[tokio::test]
async fn postgres_going_away_is_503_then_recovers() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let target: SocketAddr = {
        let rest = schema.url.split('@').nth(1).unwrap();
        let host_port = rest.split('/').next().unwrap();
        tokio::net::lookup_host(host_port)
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Proxy::start(target).await;
    let url = schema
        .url
        .replacen(&target.to_string(), &proxy.addr.to_string(), 1);
    assert_ne!(url, schema.url);
    let (_service, gateway, probe) = stack(ServiceOptions {
        store: StoreOptions {
            timeout: Duration::from_millis(500),
            ..StoreOptions::default()
        },
        ..ServiceOptions::database(&url)
    })
    .await;
    outage_then_recovery(&gateway, &probe, || proxy.cut(), || proxy.restore()).await;
}

/// The SQLite file is locked by another process (a long write): 503, then recovery.
#[tokio::test]
async fn a_locked_sqlite_file_is_503_then_recovers() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flows.db").display());
    let (_service, gateway, probe) = stack(ServiceOptions {
        store: StoreOptions {
            timeout: Duration::from_millis(300),
            ..StoreOptions::default()
        },
        ..ServiceOptions::database(&url)
    })
    .await;
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let other = std::sync::Arc::new(tokio::sync::Mutex::new(&mut other));
    let lock = || {
        let other = other.clone();
        async move {
            sqlx::query("BEGIN EXCLUSIVE")
                .execute(&mut **other.lock().await)
                .await
                .unwrap();
        }
    };
    let unlock = || {
        let other = other.clone();
        async move {
            sqlx::query("COMMIT")
                .execute(&mut **other.lock().await)
                .await
                .unwrap();
        }
    };
    // A step that completes nothing and changes no session only reads, which the lock
    // (WAL) does not block: it is answered. The completion needs the write: 503.
    outage_then_recovery_async(&gateway, &probe, lock, unlock, 200).await;
}

async fn outage_then_recovery(
    gateway: &Gateway,
    probe: &Probe,
    cut: impl FnOnce(),
    restore: impl FnOnce(),
) {
    outage_then_recovery_async(
        gateway,
        probe,
        || async { cut() },
        || async { restore() },
        503,
    )
    .await;
}

/// Checks an outage between `cut` and `restore`: 503 for the completion, with nothing
/// recorded, and `init_status` for an INIT that writes nothing; then the token completes.
async fn outage_then_recovery_async<C, R, CF, RF>(
    gateway: &Gateway,
    probe: &Probe,
    cut: C,
    restore: R,
    init_status: u16,
) where
    C: FnOnce() -> CF,
    R: FnOnce() -> RF,
    CF: std::future::Future<Output = ()>,
    RF: std::future::Future<Output = ()>,
{
    let path = "/flows/probe";
    let init = whatsapp("INIT", "tok", "", json!({"n": 1}));
    assert_eq!(gateway.post(path, &init).await.0, 200);

    cut().await;
    let done = whatsapp("data_exchange", "tok", "DONE", json!({"order": 1}));
    let (status, body) = gateway
        .post(path, &whatsapp("INIT", "tok", "", json!({"n": 2})))
        .await;
    assert_eq!(status, init_status, "{body}");
    let (status, body) = gateway.post(path, &done).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
    restore().await;

    // Nothing of the failed completion was recorded: the token completes now. (Another
    // submission, not a resend: a resend may still find the failed call's claim, if
    // the database took it just as the call gave up, and is told to retry until the
    // claim lapses.)
    let completions = probe.completions();
    let again = whatsapp("data_exchange", "tok", "DONE", json!({"order": 2}));
    let mut answer = gateway.post(path, &again).await;
    // A pooled connection broken by the outage may fail one more call.
    if answer.0 == 503 {
        answer = gateway.post(path, &again).await;
    }
    assert_eq!(answer, success("tok", json!({"order": 2})));
    assert_eq!(probe.completions(), completions + 1);
    assert_eq!(
        gateway
            .post(path, &whatsapp("INIT", "tok", "", json!({})))
            .await,
        refused()
    );
}
