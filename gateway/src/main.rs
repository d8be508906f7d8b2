//! `flowgate-gateway`: configuration → logging → TLS → routes → bind → serve until
//! SIGTERM or SIGINT. `flowgate-gateway keygen` makes a key pair for Meta's endpoint;
//! `flowgate-gateway healthcheck` asks a running gateway whether it is ready;
//! `flowgate-gateway gen-token PATH` writes the gRPC hop's bearer token once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use flowgate_cli::shutdown_signal;
use flowgate_gateway::config::{self, AdminListen, Args, Command, Config, TlsSource};
use flowgate_gateway::crypto::keys;
use flowgate_gateway::server::{ConnectionLimits, Workers};
use flowgate_gateway::tls::Tls;
use flowgate_gateway::{AppState, Listeners, run};

/// mimalloc: its per-thread free lists make the many short-lived allocations of a
/// request (buffers of hyper, h2 and tonic, JSON) far cheaper than glibc's malloc,
/// which took a sixth of the CPU per request. Built with its `no_thp` feature: by
/// default mimalloc asks the kernel for transparent huge pages on its arenas, and
/// partly used 2 MiB pages raised the gateway's resident memory by 9 MiB idle and by
/// 15 MiB holding 10,000 idle connections. (Where the kernel's THP setting is
/// `always` rather than `madvise`, the kernel may still use them.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match flowgate_cli::parse::<Args>() {
        Ok(args) => args,
        Err(e) => return e.report("flowgate-gateway"),
    };
    if let Some(Command::Keygen { out, encrypt }) = &args.command {
        let passphrase = args.private_key_passphrase.as_ref().map(|p| p.expose());
        return match keygen(out, *encrypt, passphrase) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flowgate-gateway keygen: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::GenToken { path }) = &args.command {
        return match gen_token(path) {
            Ok(wrote) => {
                let what = if wrote {
                    "wrote a new token to"
                } else {
                    "kept the token in"
                };
                eprintln!("flowgate-gateway gen-token: {what} {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flowgate-gateway gen-token: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Healthcheck { path, timeout }) = &args.command {
        // Exit 1 for every kind of failure: container runtimes read any non-zero
        // status as unhealthy, and Docker reserves 2.
        return match healthcheck(args.admin_listen, path, timeout.timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flowgate-gateway healthcheck: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let limits = ConnectionLimits::from_args(&args);
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flowgate-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    // This thread serves a share of the connections, the admin listener and the
    // signals; FLOWGATE_WORKER_THREADS - 1 more threads serve the other shares.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("flowgate-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_logged(config, limits))
}

async fn run_logged(config: Config, limits: ConnectionLimits) -> ExitCode {
    let telemetry = match flowgate_telemetry::init("flowgate-gateway", config.log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("flowgate-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match serve(config, limits).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("flowgate-gateway: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The last batch of spans is lost unless flushed. The flush blocks its thread
    // until the exporter has sent them, and the exporter's connection runs on this
    // runtime's one thread: off it.
    if let Err(e) = tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
        eprintln!("flowgate-gateway: flushing traces: {e}");
    }
    code
}

async fn serve(config: Config, limits: ConnectionLimits) -> anyhow::Result<()> {
    let tls = match &config.tls {
        TlsSource::Off => {
            tracing::warn!(
                "TLS is off (FLOWGATE_TLS=off): serving plain HTTP; put a TLS-terminating proxy in front"
            );
            None
        }
        TlsSource::Generated => {
            tracing::warn!(
                "no FLOWGATE_TLS_CERT/FLOWGATE_TLS_KEY: serving a self-signed certificate for localhost, fit for local use only"
            );
            Some(Tls::self_signed()?)
        }
        TlsSource::Files { cert, key } => Some(Tls::from_pem_files(cert, key)?),
    };
    let state = AppState::from_config(&config)?;
    let workers = Workers::start(config.worker_threads - 1, "gateway")
        .context("cannot start the worker threads")?;
    let mut threads = Vec::new();
    for runtime in workers.handles() {
        // Made on that thread: the connections and tasks of its upstreams run there.
        let (state, config) = (state.clone(), config.clone());
        let made = runtime
            .spawn(async move { state.for_thread(&config) })
            .await
            .context("a worker thread failed at start")??;
        threads.push((runtime.clone(), made));
    }
    let shutdown = shutdown_signal()?;
    let public = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on FLOWGATE_LISTEN {}", config.listen))?;
    let admin = config
        .admin_listen
        .map(|addr| {
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on FLOWGATE_ADMIN_LISTEN {addr}"))
        })
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", public.local_addr()?);
    for route in &config.routes {
        tracing::info!(
            url = %format!("{base}{}", route.path),
            flow = ?route.flow,
            mode = %route.mode.mode(),
            backend = %route.backend,
            "route",
        );
    }
    tracing::info!(
        url = %base,
        admin = ?admin.as_ref().map(|a| a.local_addr()).transpose()?,
        threads = config.worker_threads,
        "flowgate gateway listening",
    );
    if let (true, Some(admin)) = (config.preview, &admin) {
        tracing::info!(url = %format!("http://{}/preview/", admin.local_addr()?), "flow preview");
    }
    run(
        Listeners { public, admin },
        state,
        threads,
        tls,
        limits,
        shutdown,
        config.shutdown_grace,
    )
    .await?;
    // Every connection has ended: the threads stop, and their runtimes with them.
    drop(workers);
    tracing::info!("stopped");
    Ok(())
}

/// Writes a new private key to `out` (readable by its owner only) and prints the public key.
fn keygen(out: &Path, encrypt: bool, passphrase: Option<&str>) -> anyhow::Result<()> {
    let passphrase = match (encrypt, passphrase) {
        (false, _) => None,
        (true, Some(p)) if !p.is_empty() => Some(p.as_bytes()),
        (true, _) => {
            anyhow::bail!("--encrypt needs the passphrase in FLOWGATE_PRIVATE_KEY_PASSPHRASE")
        }
    };
    let generated = keys::generate(passphrase)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    file.write_all(generated.private_pem.as_bytes())?;
    eprintln!(
        "wrote the private key to {}{}; upload this public key to WhatsApp:",
        out.display(),
        if encrypt { " (encrypted)" } else { "" }
    );
    print!("{}", generated.public_pem);
    Ok(())
}

/// Writes a new bearer token (32 random bytes from aws-lc-rs, base64url without
/// padding, and a newline) to `path`, readable by its owner only, unless `path`
/// exists: then it is kept, so that restarts keep the token. Parent directories are
/// created. The token is written to a temporary file beside `path` and linked into
/// place, so `path` never holds half a token and two racing writers keep one token.
/// Returns whether a new token was written.
fn gen_token(path: &Path) -> anyhow::Result<bool> {
    use base64::Engine as _;

    if path.exists() {
        return Ok(false);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no random bytes"))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(format!("{token}\n").as_bytes())?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// One `GET path` to the admin listener on this host; succeeds on `200`.
///
/// The admin listener speaks plain HTTP/1.1, so a request written by hand over a
/// blocking socket is enough, and it keeps an HTTP client library out of the binary.
/// Blocking is fine here: this is the whole process, nothing else runs meanwhile.
/// `path` is checked and `timeout` above zero (see `config::Command::Healthcheck`).
fn healthcheck(admin_listen: AdminListen, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let addr = config::admin_probe_address(admin_listen)?;
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to the admin listener at {addr}"))?;
    stream.set_write_timeout(Some(remaining()))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: flowgate-healthcheck\r\nConnection: close\r\n\r\n"
    )?;
    // `Connection: close` makes the server end the answer by closing; the admin
    // answers are tiny, so reading at most 64 KiB bounds a misbehaving peer.
    let mut answer = Vec::new();
    let mut reader = (&stream).take(64 * 1024);
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(remaining()))?;
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Err(e).with_context(|| format!("no complete answer from {addr}{path}"));
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .with_context(|| format!("not an HTTP answer from {addr}{path}: {status_line:?}"))?;
    let body = body.trim();
    anyhow::ensure!(status == "200", "{addr}{path} answered {status}: {body}");
    println!("{body}");
    Ok(())
}
