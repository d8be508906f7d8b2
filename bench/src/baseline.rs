//! The no-hop baseline: a minimal axum + rustls handler answering the sign-up step in
//! process — HTTPS and JSON, no gRPC, no store — measured under the same load
//! generator. It runs on a runtime of its own whose threads are named
//! [`THREAD_NAME`], so its CPU can be told apart from the load generator's.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use crate::cert::Cert;
use crate::workload::WELCOME_MESSAGE;

/// The name prefix of the baseline server's threads.
pub const THREAD_NAME: &str = "bench-baseline";

/// A baseline running in this process, on runtimes of its own, answering HTTPS at
/// `addr`; dropping it stops every runtime.
#[derive(Debug)]
pub struct Baseline {
    pub addr: SocketAddr,
    pub runtimes: Vec<tokio::runtime::Runtime>,
}

impl Drop for Baseline {
    fn drop(&mut self) {
        for runtime in self.runtimes.drain(..) {
            runtime.shutdown_background();
        }
    }
}

/// Starts the server on 127.0.0.1, with as many worker threads as the machine has cores
/// (what the gateway's runtime uses too).
pub fn start(cert: &Cert) -> anyhow::Result<Baseline> {
    let runtime = runtime(THREAD_NAME)?;
    let app = axum::Router::new().route("/flow-endpoint", post(signup));
    let addr = serve_https(cert, &runtime, app)?;
    Ok(Baseline {
        addr,
        runtimes: vec![runtime],
    })
}

/// A multi-threaded runtime whose threads are named `name`, one per core.
pub fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// Serves `app` over HTTPS (HTTP/1.1 and h2) on a new 127.0.0.1 port, on `runtime`.
pub fn serve_https(
    cert: &Cert,
    runtime: &tokio::runtime::Runtime,
    app: axum::Router,
) -> anyhow::Result<SocketAddr> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())?],
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let server = {
        let _entered = runtime.enter();
        axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
        )
        .context("serving the baseline")?
    };
    runtime.spawn(async move { server.serve(app.into_make_service()).await });
    Ok(addr)
}

/// The sign-up flow's first two screens, as the flow service answers them.
async fn signup(Json(request): Json<Value>) -> Result<Json<Value>, StatusCode> {
    let (screen, data) = answer(
        request["action"].as_str(),
        request["screen"].as_str(),
        &request["data"],
    )
    .ok_or(StatusCode::BAD_REQUEST)?;
    Ok(Json(json!({"screen": screen, "data": data})))
}

/// The next screen and its data for the sign-up flow's INIT and first step; `None` for
/// anything else.
pub fn answer(
    action: Option<&str>,
    screen: Option<&str>,
    data: &Value,
) -> Option<(&'static str, Value)> {
    let welcome = || json!({"welcome_message": WELCOME_MESSAGE});
    match (action, screen) {
        (Some("INIT"), _) => Some(("WELCOME_SCREEN", welcome())),
        (Some("data_exchange"), Some("WELCOME_SCREEN")) => Some(match data["email"].as_str() {
            Some(email) if is_valid_email(email) => {
                ("CONFIRMATION_SCREEN", json!({"user_email": email}))
            }
            _ => {
                let mut data = welcome();
                data["error_message"] = "Please enter a valid email address.".into();
                ("WELCOME_SCREEN", data)
            }
        }),
        _ => None,
    }
}

/// The flow service's check (`flow_service::flows::signup::is_valid_email`), restated
/// so the baseline depends on nothing of flowgate.
fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && !email.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}
