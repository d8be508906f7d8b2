//! flowgate-conform: plays WhatsApp's side against a Flows endpoint, or against any
//! `flowgate.v1` flow service, and checks every answer against the flow's Flow JSON.
//!
//! Reading order:
//! - [`cli`] — the command line, read into [`Options`].
//! - [`layout`] — what each screen shows: its components, inputs and actions.
//! - [`fill`] — valid values for inputs, and `${form.…}` / `${data.…}` bindings.
//! - [`scenario`] — the optional file of real inputs and extra walks for branches.
//! - [`walk`] — the walk over every screen, over a [`walk::Transport`]; each answer is
//!   checked with the SDK's [`FlowJson::check`], then coverage and p90 latency.
//! - [`endpoint`] — HTTPS transport, plain or sealed ([`seal`]), and ping, error
//!   notification, 421 and 432.
//! - [`grpc`] — the flow service transport, and health, `NOT_FOUND`, idempotency.
//! - [`report`] — one line per check, or JSON.

pub mod cli;
pub mod endpoint;
pub mod fill;
pub mod grpc;
pub mod layout;
pub mod report;
pub mod scenario;
pub mod seal;
pub mod walk;

use flowgate_sdk::FlowJson;

use crate::endpoint::{Endpoint, EndpointOptions};
use crate::grpc::{Grpc, GrpcOptions};
use crate::layout::Layout;
use crate::report::Report;
use crate::scenario::Scenario;

/// What to check.
#[derive(Debug)]
pub enum Target {
    Endpoint(EndpointOptions),
    Grpc(GrpcOptions),
}

/// A run: the implementation under test, its Flow JSON (text) and the scenario.
#[derive(Debug)]
pub struct Options {
    pub target: Target,
    pub flow_json: String,
    pub scenario: Scenario,
}

/// Why a run could not start (a check that fails is in the [`Report`] instead).
#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    #[error("the Flow JSON: {0}")]
    FlowJson(#[from] flowgate_sdk::FlowJsonError),
    #[error("the Flow JSON's layout: {0}")]
    Layout(#[from] serde_json::Error),
    #[error(transparent)]
    Endpoint(#[from] endpoint::EndpointError),
    #[error(transparent)]
    Grpc(#[from] grpc::GrpcError),
}

/// Runs every check against the target.
pub async fn run(options: Options) -> Result<Report, ConformError> {
    let flow = FlowJson::parse(&options.flow_json)?;
    let layout = Layout::parse(&options.flow_json)?;
    let entry = flow.entry_screens().first().cloned().unwrap_or_default();
    let mut report = Report::default();
    match options.target {
        Target::Endpoint(endpoint) => {
            let mut endpoint = Endpoint::new(endpoint)?;
            endpoint.preflight(&mut report, &entry).await;
            walk::run(
                &flow,
                &layout,
                &options.scenario,
                &mut endpoint,
                &mut report,
            )
            .await;
        }
        Target::Grpc(grpc) => {
            let mut grpc = Grpc::connect(grpc).await?;
            grpc.preflight(&mut report).await;
            walk::run(&flow, &layout, &options.scenario, &mut grpc, &mut report).await;
            grpc.idempotency(&mut report).await;
        }
    }
    Ok(report)
}
