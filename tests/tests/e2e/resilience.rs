//! Fault injection with several flow service replicas on 127.0.0.1: killing,
//! draining, slowness, floods, retries and replica discovery. No request a user
//! makes may fail while at least one replica serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, eventually, whatsapp};
use flowgate_proto::v1::flow_service_server::{FlowService, FlowServiceServer};
use flowgate_proto::v1::{self, FlowResponse};
use serde_json::json;
use tonic::{Request, Response, Status};

async fn replicas(n: usize) -> (Vec<Service>, Vec<Probe>) {
    let mut services = Vec::new();
    let mut probes = Vec::new();
    for _ in 0..n {
        let probe = Probe::default();
        services.push(Service::start(probe.clone()).await);
        probes.push(probe);
    }
    (services, probes)
}

fn backend(services: &[Service]) -> String {
    services
        .iter()
        .map(Service::url)
        .collect::<Vec<_>>()
        .join(",")
}

/// One sign-up journey; returns the first unexpected answer.
async fn journey(gateway: &Gateway, token: &str) -> Result<(), String> {
    let steps = [
        (whatsapp("INIT", token, "", json!({})), "WELCOME_SCREEN"),
        (
            whatsapp(
                "data_exchange",
                token,
                "WELCOME_SCREEN",
                json!({"email": "ada@example.com"}),
            ),
            "CONFIRMATION_SCREEN",
        ),
        (
            whatsapp(
                "data_exchange",
                token,
                "CONFIRMATION_SCREEN",
                json!({"email": "ada@example.com"}),
            ),
            "SUCCESS",
        ),
    ];
    for (request, screen) in steps {
        let (status, body) = gateway.post("/flow-endpoint", &request).await;
        if status != 200 || body["screen"] != screen {
            return Err(format!("{request} → {status} {body}"));
        }
    }
    Ok(())
}

/// Journeys from `workers` concurrent users until `stop` is set; returns (journeys, failures).
fn run_journeys(
    gateway: Arc<Gateway>,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for worker in 0..workers {
            let (gateway, stop) = (gateway.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let (mut done, mut failures) = (0, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    let token = format!("w{worker}-{done}");
                    if let Err(e) = journey(&gateway, &token).await {
                        failures.push(e);
                    }
                    // One call to the probe flow too, which counts calls per replica.
                    let (status, body) = gateway
                        .post(
                            "/flows/probe",
                            &whatsapp("INIT", &format!("{token}-probe"), "", json!({})),
                        )
                        .await;
                    if status != 200 {
                        failures.push(format!("probe INIT → {status} {body}"));
                    }
                    done += 1;
                }
                (done, failures)
            }));
        }
        let (mut done, mut failures) = (0, Vec::new());
        for task in tasks {
            let (d, f) = task.await.unwrap();
            done += d;
            failures.extend(f);
        }
        (done, failures)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_one_replica_and_drain_another_under_load_without_a_failed_request() {
    let (mut services, probes) = replicas(3).await;
    let gateway = Arc::new(Gateway::start(GatewayOptions::new(backend(&services))).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = run_journeys(gateway.clone(), 6, stop.clone());

    tokio::time::sleep(Duration::from_millis(400)).await;
    services.remove(0).kill().await; // SIGKILL-like: every connection dropped at once
    tokio::time::sleep(Duration::from_millis(400)).await;
    services.remove(0).stop().await; // SIGTERM-like: NOT_SERVING, drain, close
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::SeqCst);

    let (journeys, failures) = load.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {journeys} journeys failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(journeys >= 30, "only {journeys} journeys ran");
    // Every replica took part before the faults.
    for (i, probe) in probes.iter().enumerate() {
        assert!(
            probe.calls.load(Ordering::SeqCst) > 0,
            "replica {i} got no calls"
        );
    }
    // The survivor serves on, and the gateway is still ready.
    assert!(journey(&gateway, "after").await.is_ok());
    assert_eq!(gateway.admin("/readyz").await.0, 200);
}

#[tokio::test]
async fn all_replicas_down_is_a_503_within_a_second() {
    let (services, _) = replicas(2).await;
    let gateway = Gateway::start(GatewayOptions::new(backend(&services))).await;
    assert!(journey(&gateway, "before").await.is_ok());
    for service in services {
        service.kill().await;
    }
    for i in 0..5 {
        let started = Instant::now();
        let (status, body) = gateway
            .post("/flow-endpoint", &whatsapp("INIT", "t", "", json!({})))
            .await;
        let elapsed = started.elapsed();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("service_unavailable")),
            "{body}"
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "request {i} took {elapsed:?}"
        );
    }
    assert_eq!(gateway.admin("/readyz").await.0, 503);
    assert_eq!(
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0,
        503
    );
}

#[tokio::test]
async fn readiness_holds_while_one_replica_serves() {
    let (mut services, _) = replicas(2).await;
    let gateway = Gateway::start(GatewayOptions::new(backend(&services))).await;
    assert_eq!(gateway.admin("/readyz").await.0, 200);
    services.remove(0).stop().await;
    assert_eq!(gateway.admin("/readyz").await.0, 200);
    assert_eq!(
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0,
        200
    );
    services.remove(0).stop().await;
    eventually(|| async { gateway.admin("/readyz").await.0 == 503 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_times_out_and_load_moves_to_the_fast_ones() {
    let (services, probes) = replicas(3).await;
    probes[0].delay_ms.store(5_000, Ordering::SeqCst);
    let mut options = GatewayOptions::new(backend(&services));
    options.request_timeout = Duration::from_millis(600);
    let gateway = Arc::new(Gateway::start(options).await);

    let (ok, timeouts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let (gateway, ok, timeouts) = (gateway.clone(), ok.clone(), timeouts.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let started = Instant::now();
                let (status, body) = gateway
                    .post(
                        "/flows/probe",
                        &whatsapp("data_exchange", &format!("{worker}-{i}"), "ECHO", json!({})),
                    )
                    .await;
                match status {
                    200 => ok.fetch_add(1, Ordering::SeqCst),
                    504 => {
                        assert_eq!(body["error"]["code"], "upstream_timeout");
                        // At the gateway's 600 ms deadline, not after the replica's
                        // 5 s; the client's clock also counts the connection and a
                        // busy machine's scheduling, hence the slack.
                        assert!(
                            started.elapsed() < Duration::from_millis(2_000),
                            "504 after {:?}",
                            started.elapsed()
                        );
                        timeouts.fetch_add(1, Ordering::SeqCst)
                    }
                    other => panic!("unexpected {other}: {body}"),
                };
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let slow_calls = probes[0].calls.load(Ordering::SeqCst);
    let fast_calls: usize = probes[1..]
        .iter()
        .map(|p| p.calls.load(Ordering::SeqCst))
        .sum();
    assert_eq!(
        ok.load(Ordering::SeqCst) + timeouts.load(Ordering::SeqCst),
        60
    );
    assert_eq!(
        timeouts.load(Ordering::SeqCst),
        slow_calls,
        "every call to the slow replica timed out"
    );
    // Balancing by calls in flight keeps the slow replica to a small share (random
    // choice would give it about a third: 20 of 60).
    assert!(
        (1..=10).contains(&slow_calls),
        "the slow replica got {slow_calls} calls, the fast ones {fast_calls}: none would \
         test its timeouts"
    );
    // The slow replica saw its calls cancelled at the deadline.
    eventually(|| async { probes[0].cancelled.load(Ordering::SeqCst) == slow_calls }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_fast_503s_and_admitted_requests_stay_fast() {
    let (services, probes) = replicas(1).await;
    probes[0].delay_ms.store(300, Ordering::SeqCst);
    let mut options = GatewayOptions::new(backend(&services));
    options.max_in_flight = 4;
    let gateway = Arc::new(Gateway::start(options).await);
    assert_eq!(
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0,
        200
    );

    let mut tasks = Vec::new();
    for i in 0..40 {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = gateway
                .client
                .post(format!("{}/flows/probe", gateway.base))
                .json(&whatsapp("INIT", &format!("t{i}"), "", json!({})))
                .send()
                .await
                .unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let (status, body) = flowgate_e2e::read(response).await;
            (status, body, retry_after, started.elapsed())
        }));
    }
    let (mut admitted, mut shed) = (0, 0);
    for task in tasks {
        let (status, body, retry_after, elapsed) = task.await.unwrap();
        match status {
            200 => {
                admitted += 1;
                assert!(
                    elapsed < Duration::from_secs(2),
                    "an admitted request took {elapsed:?}"
                );
            }
            503 => {
                shed += 1;
                assert_eq!(body["error"]["code"], "overloaded");
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert!(
                    elapsed < Duration::from_millis(250),
                    "a refusal took {elapsed:?}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(admitted >= 4, "admitted {admitted}");
    assert!(shed >= 20, "shed only {shed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_service_sheds_load_too() {
    let probe = Probe::default();
    probe.delay_ms.store(300, Ordering::SeqCst);
    let flows = flow_service::flows::reference().register("probe", probe.clone());
    let options = flow_service::server::ServeOptions {
        drain_delay: Duration::ZERO,
        max_in_flight: 2,
        ..Default::default()
    };
    let service = Service::serve_with("127.0.0.1:0".parse().unwrap(), flows, None, options).await;
    let gateway = Arc::new(Gateway::start(GatewayOptions::new(service.url())).await);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            gateway
                .post(
                    "/flows/probe",
                    &whatsapp("INIT", &format!("t{i}"), "", json!({})),
                )
                .await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status == 503 {
            assert_eq!(body["error"]["code"], "overloaded", "{body}");
        }
        statuses.push(status);
    }
    assert!(
        statuses.iter().filter(|&&s| s == 200).count() >= 2,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|&&s| s == 503).count() >= 4,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    // Health is never shed.
    assert_eq!(gateway.admin("/readyz").await.0, 200);
}

/// A replica that refuses every flow call with UNAVAILABLE, counting them and keeping
/// the idempotency keys and attempts of the INIT calls it refused.
#[derive(Clone, Default)]
struct Refuser(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<(String, u32)>>>);

#[tonic::async_trait]
impl FlowService for Refuser {
    async fn init(
        &self,
        request: Request<v1::InitRequest>,
    ) -> Result<Response<FlowResponse>, Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let context = request.into_inner().context.unwrap_or_default();
        self.1
            .lock()
            .unwrap()
            .push((context.idempotency_key, context.attempt));
        Err(Status::unavailable("refusing"))
    }
    async fn data_exchange(
        &self,
        _: Request<v1::DataExchangeRequest>,
    ) -> Result<Response<FlowResponse>, Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Status::unavailable("refusing"))
    }
    async fn back(&self, _: Request<v1::BackRequest>) -> Result<Response<FlowResponse>, Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Status::unavailable("refusing"))
    }
    async fn notify_error(
        &self,
        _: Request<v1::NotifyErrorRequest>,
    ) -> Result<Response<v1::NotifyErrorResponse>, Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Status::unavailable("refusing"))
    }
}

#[tokio::test]
async fn unavailable_is_retried_elsewhere_with_the_same_idempotency_key() {
    let refuser = Refuser::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refuser_addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FlowServiceServer::new(refuser.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (services, _) = replicas(1).await;
    let gateway = Gateway::start(GatewayOptions::new(format!(
        "http://{refuser_addr},{}",
        services[0].url()
    )))
    .await;

    // Each request differs (a repeated one would get the flow service's stored answer);
    // whenever one was refused first, the retry must carry the refused call's key.
    let mut retried = 0;
    for i in 0..20 {
        let request = whatsapp("INIT", &format!("tok-{i}"), "", json!({"n": i}));
        let (status, body) = gateway.post("/flows/probe", &request).await;
        assert_eq!(status, 200, "{body}");
        let key = body["data"]["idempotency_key"].as_str().unwrap().to_owned();
        match body["data"]["attempt"].as_u64() {
            Some(1) => assert!(!refuser.1.lock().unwrap().iter().any(|(k, _)| k == &key)),
            Some(2) => {
                retried += 1;
                let seen = refuser.1.lock().unwrap().contains(&(key, 1));
                assert!(seen, "request {i}: the retry changed its key");
            }
            other => panic!("attempt {other:?}"),
        }
    }
    assert!(
        retried > 0,
        "no request was refused first in 20 (two replicas, random choice)"
    );
    assert_eq!(refuser.0.load(Ordering::SeqCst), retried);
}

#[tokio::test]
async fn replicas_are_found_and_dropped_through_dns() {
    let (services, probes) = replicas(3).await;
    let addrs: Vec<SocketAddr> = services.iter().map(|s| s.addr).collect();
    // A resolver for `flows.test` whose answer the test changes; an empty answer or an
    // error must never empty the pool.
    let answer: Arc<std::sync::Mutex<std::io::Result<Vec<SocketAddr>>>> =
        Arc::new(std::sync::Mutex::new(Ok(vec![addrs[0]])));
    let shared = answer.clone();
    let resolver: flowgate_gateway::upstream::pool::Resolver = Arc::new(move |host, _port| {
        assert_eq!(host, "flows.test");
        let result = match &*shared.lock().unwrap() {
            Ok(addrs) => Ok(addrs.clone()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        Box::pin(async move { result })
    });
    let mut options = GatewayOptions::new("http://flows.test:50051");
    options.resolver = Some(resolver);
    let gateway = Gateway::start(options).await;
    let upstream_addrs = |g: &Gateway| g.replica_addrs();

    eventually(|| async { upstream_addrs(&gateway) == vec![addrs[0]] }).await;
    *answer.lock().unwrap() = Ok(addrs.clone());
    eventually(|| async { upstream_addrs(&gateway).len() == 3 }).await;
    for i in 0..30 {
        let (status, _) = gateway
            .post(
                "/flows/probe",
                &whatsapp("INIT", &format!("t{i}"), "", json!({})),
            )
            .await;
        assert_eq!(status, 200);
    }
    assert!(
        probes.iter().all(|p| p.calls.load(Ordering::SeqCst) > 0),
        "every replica found through DNS gets calls"
    );

    // An empty answer and a failed lookup keep the last set.
    *answer.lock().unwrap() = Ok(vec![]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream_addrs(&gateway).len(), 3);
    *answer.lock().unwrap() = Err(std::io::Error::other("resolver down"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream_addrs(&gateway).len(), 3);

    // A replica that leaves DNS gets no more calls.
    *answer.lock().unwrap() = Ok(vec![addrs[1], addrs[2]]);
    eventually(|| async { upstream_addrs(&gateway).len() == 2 }).await;
    let before = probes[0].calls.load(Ordering::SeqCst);
    for i in 0..10 {
        assert_eq!(
            gateway
                .post(
                    "/flows/probe",
                    &whatsapp("INIT", &format!("u{i}"), "", json!({}))
                )
                .await
                .0,
            200
        );
    }
    assert_eq!(probes[0].calls.load(Ordering::SeqCst), before);
}
