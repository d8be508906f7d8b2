//! `flow-service`: configuration → logging → store → bind → serve the reference flows until
//! SIGTERM or SIGINT. `flow-service issue-token` prints a signed flow token instead;
//! `flow-service healthcheck` asks a running flow service whether it is serving.

mod healthcheck;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use flow_service::config::{self, Args, Command, Config, IssueToken};
use flowgate_cli::shutdown_signal;

/// mimalloc: its per-thread free lists make the many short-lived allocations of a call
/// (buffers of hyper, h2 and tonic, protobuf and JSON, the store's rows) far cheaper
/// than glibc's malloc. Built without transparent huge pages, like the gateway's (see
/// there).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match flowgate_cli::parse::<Args>() {
        Ok(args) => args,
        Err(e) => return e.report("flow-service"),
    };
    if let Some(issue) = IssueToken::from_args(&args) {
        return issue_token(issue);
    }
    let command = args.command.clone();
    let config = match Config::from_args(args) {
        Ok(config) => config,
        // A healthcheck exits with 1 for every failure (see `run`).
        Err(e) if matches!(command, Some(Command::Healthcheck { .. })) => {
            eprintln!("flow-service healthcheck: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("flow-service: {e}");
            return ExitCode::from(2);
        }
    };
    let threads = config::WorkerThreads::for_command(command.as_ref(), &config);
    let runtime = match threads.runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("flow-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(command, config))
}

async fn run(command: Option<Command>, config: Config) -> ExitCode {
    if let Some(Command::Healthcheck {
        service,
        timeout,
        timeout_ms,
    }) = command
    {
        // Exit 1 for every kind of failure: container runtimes read any non-zero
        // status as unhealthy, and Docker reserves 2.
        let addr = config::probe_address(config.listen);
        let timeout = timeout_ms.map_or(timeout.timeout, Duration::from_millis);
        let tls = config.tls_cert_pem.as_deref();
        return match healthcheck::check(addr, tls, service, timeout).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flow-service healthcheck: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let telemetry = match flowgate_telemetry::init("flow-service", config.log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("flow-service: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("flow-service: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The last batch of spans is lost unless flushed. The flush blocks its thread
    // until the exporter has sent them, and the exporter's connection runs on this
    // runtime: off its thread, which may be the runtime's only one.
    if let Err(e) = tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
        eprintln!("flow-service: flushing traces: {e}");
    }
    code
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Signal handlers go in before "listening" is announced: whoever waits for that
    // line may send SIGTERM at once.
    let shutdown = shutdown_signal().context("installing signal handlers")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on FLOW_SERVICE_LISTEN {}", config.listen))?;
    let store = flow_service::store::connect(&config.database_url, config.store.clone())
        .await
        .context("FLOW_SERVICE_DATABASE_URL")?;
    tracing::info!(backend = store.backend(), url = store.url(), "store ready");
    let flows = flow_service::flows::reference()
        .strict(config.strict)
        .store(store)
        .tokens(config.tokens.clone());
    if let Some(addr) = config.admin_listen {
        let admin = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on FLOW_SERVICE_ADMIN_LISTEN {addr}"))?;
        // The bound address: with port 0 the configured one does not say where.
        let addr = admin.local_addr()?;
        tracing::info!(%addr, "admin listening (GET /metrics)");
        let router = flow_service::server::admin_router(flows.clone());
        tokio::spawn(async move { axum::serve(admin, router).await });
    }
    if config.exposed() {
        tracing::warn!(
            addr = %config.listen,
            "the gRPC listener is reachable beyond loopback and admits any caller: set FLOW_SERVICE_AUTH_TOKEN (or _FILE) or FLOW_SERVICE_TLS_CLIENT_CA"
        );
    }
    let runtime = runtime_threads();
    tracing::info!(
        addr = %listener.local_addr()?,
        ?flows,
        // The runtime as it runs, not as configured.
        runtime = runtime.0,
        threads = runtime.1,
        auth = if config.serve.auth.is_some() { "token" } else { "none" },
        tls = match &config.serve.tls {
            None => "off",
            Some(tls) if tls.requires_client_certificates() => "mutual",
            Some(_) => "on",
        },
        "flow service listening"
    );
    flow_service::server::run_with(listener, flows, shutdown, config.serve).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The kind of runtime that runs the calls and its threads: `current_thread` and 1, or
/// `multi_thread` and the size of its pool.
fn runtime_threads() -> (&'static str, usize) {
    let runtime = tokio::runtime::Handle::current();
    match runtime.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => ("current_thread", 1),
        _ => ("multi_thread", runtime.metrics().num_workers()),
    }
}

/// Prints a token for a flow this binary runs.
fn issue_token(issue: Result<IssueToken, flow_service::config::ConfigError>) -> ExitCode {
    let issue = match issue {
        Ok(issue) => issue,
        Err(e) => {
            eprintln!("flow-service: {e}");
            return ExitCode::from(2);
        }
    };
    let flows = flow_service::flows::reference();
    if !flows.names().contains(&issue.flow.as_str()) {
        eprintln!(
            "flow-service: no flow named {:?} here; flows: {}",
            issue.flow,
            flows.names().join(", ")
        );
        return ExitCode::from(2);
    }
    let token = flow_service::tokens::issue(
        &issue.secret,
        &issue.flow,
        issue.subject.as_deref(),
        issue.ttl,
        std::time::SystemTime::now(),
    );
    println!("{token}");
    ExitCode::SUCCESS
}
