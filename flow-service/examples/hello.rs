//! A first flow: ask a name, greet, finish. Run it with
//! `cargo run -p flow-service --example hello`, then point a gateway at it
//! (`FLOWGATE_BACKEND=http://127.0.0.1:50051`) and POST to `/flows/hello`.
//!
//! The flow itself is written against `flowgate_sdk` alone; only `main` uses the
//! service crate, to serve it.

use flowgate_sdk::{FlowError, FlowJson, FlowJsonError, Outcome, Request, Router};
use serde_json::json;

fn ask() -> Outcome {
    Outcome::screen("ASK", json!({"question": "What is your name?"}))
}

async fn start(_request: Request) -> Result<Outcome, FlowError> {
    Ok(ask())
}

async fn answered(request: Request) -> Result<Outcome, FlowError> {
    Ok(match request.text("name") {
        Some(name) => Outcome::screen("THANKS", json!({"greeting": format!("Hello, {name}!")})),
        None => ask().with_error("Please tell us your name."),
    })
}

async fn done(_request: Request) -> Result<Outcome, FlowError> {
    Ok(Outcome::complete(json!({"greeted": true})))
}

fn hello() -> Result<Router, FlowJsonError> {
    let flow_json = FlowJson::parse(include_str!("hello.json"))?;
    Ok(Router::new(flow_json)
        .on_init(start)
        .on_exchange("ASK", answered)
        .on_exchange("THANKS", done))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flows = flow_service::service::Flows::new()
        .register("hello", hello()?)
        .strict(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    flow_service::server::run(listener, flows, shutdown).await?;
    Ok(())
}
