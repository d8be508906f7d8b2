//! A first flow: ask a name, greet, finish. Run it with
//! `cargo run -p flow-service --example hello`, then point a gateway at it
//! (`FLOWGATE_BACKEND=http://127.0.0.1:50051`) and POST to `/flows/hello`.
//!
//! The flow itself is written against `flowgate_sdk` alone; `main` serves it with one
//! call into `flowgate_server`.

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

// One thread runs every call, as in the `flow-service` binary by default
// (`FLOW_SERVICE_WORKER_THREADS` in the README): a handler that blocks belongs on
// `tokio::task::spawn_blocking`.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let flows = flowgate_server::Flows::new()
        .register("hello", hello()?)
        .strict(true);
    // Until Ctrl-C or SIGTERM.
    flowgate_server::serve("127.0.0.1:50051", flows).await?;
    Ok(())
}
