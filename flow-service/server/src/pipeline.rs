//! The call pipeline: what happens around the handler of every `INIT`,
//! `data_exchange` and `BACK` call, for every flow, as named steps that [`run`] reads
//! top to bottom.
//!
//! 1. [`Call::route`] — the flow by name; a flow token is required. The call's fields
//!    (flow, action, screen, token_hash, request_id, attempt) are recorded once, on the
//!    current span — the server span of [`crate::server`] — so that every log line and
//!    span of the call carries them without repeating them;
//! 2. [`Call::token_policy`] — under `signed`, a token that is not valid for this flow
//!    is refused ("token no longer valid") without touching the store;
//! 3. [`Call::read_data`] — the screen data, as JSON;
//! 4. [`Call::claim`] — the idempotency key: a call seen before gets its stored outcome
//!    and the handler does not run again (a call still in progress elsewhere:
//!    `UNAVAILABLE`) — except that once the token is completed only the completion
//!    itself is answered again;
//! 5. [`Call::single_use`] — a completed token is refused;
//! 6. [`Call::load_session`] — the token's session, for the handler;
//! 7. [`Call::handler`] — the flow's handler, in a span of its own;
//! 8. [`Call::check_flow_json`] — the answer against the flow's Flow JSON: counted and
//!    logged, and refused in strict mode;
//! 9. [`Call::commit`] — the outcome, and for a completion the completion record, in
//!    one atomic write before the answer leaves. Of two calls racing to complete one
//!    token, the store lets one win; the other is refused.
//!
//! A step either lets the call go on or ends it with an [`Early`] answer; [`Call::answer`]
//! turns either into the reply, records the outcome on the span and logs the call
//! once. A call that fails after claiming its key releases it, so a retry runs again.
//! Any store failure is `UNAVAILABLE` (HTTP 503), and nothing half-written remains.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use flowgate_proto::json::struct_to_json;
use flowgate_proto::token_hash;
use flowgate_proto::v1::{self, FlowResponse};
use tonic::Status;
use tracing::{Instrument, Span};

use crate::sdk::{Action, Flow, Outcome, Request, Session};
use crate::service::{Flows, TOKEN_NO_LONGER_VALID, context_from_proto, outcome_to_proto};
use crate::store::{Claim, Finished, Store, StoreError};
use crate::tokens::{self, TokenPolicy};

/// The proto fields of an `INIT`, `data_exchange` or `BACK` call.
pub(crate) struct Incoming {
    pub action: Action,
    pub context: Option<v1::RequestContext>,
    pub flow_token: String,
    pub screen: String,
    pub data: Option<prost_types::Struct>,
}

/// Runs one call through every step, in order.
pub(crate) async fn run(
    flows: &Flows,
    store: &dyn Store,
    mut incoming: Incoming,
) -> Result<FlowResponse, Status> {
    let data = incoming.data.take();
    let mut call = Call::route(flows, store, incoming)?;
    let ended = async {
        call.token_policy()?;
        call.read_data(data)?;
        call.claim().await?;
        call.single_use().await?;
        call.load_session().await?;
        let outcome = call.handler().await?;
        call.check_flow_json(&outcome)?;
        // Unusable data is refused before anything is recorded.
        let response = outcome_to_proto(outcome.clone()).map_err(Early::Failed)?;
        call.commit(&outcome).await?;
        Ok((outcome, response))
    }
    .await;
    call.answer(ended).await
}

/// How a step ends a call before a new outcome is committed.
enum Early {
    /// A repeated call: its stored outcome, answered again.
    Stored(Outcome),
    /// The token is refused ("token no longer valid", the gateway's 427), for this reason.
    Refused(String),
    /// A gRPC error: bad input, a flow's error, the store unavailable, the same call
    /// in progress. Logged where it arose.
    Failed(Status),
}

/// One call on its way through the pipeline.
struct Call<'a> {
    flows: &'a Flows,
    store: &'a dyn Store,
    /// The flow's registered name (the default flow's, for an empty name).
    name: &'a str,
    flow: &'a Arc<dyn Flow>,
    action: Action,
    request: Request,
    /// The idempotency key, when the call has one.
    key: Option<String>,
    /// Whether this call holds its key's claim, to release it if the call fails.
    claimed: bool,
}

impl<'a> Call<'a> {
    /// Step 1: the flow by name, and the call's fields on the span.
    fn route(flows: &'a Flows, store: &'a dyn Store, incoming: Incoming) -> Result<Self, Status> {
        let context = context_from_proto(incoming.context);
        let (name, flow) = flows.get(&context.flow)?;
        if incoming.flow_token.is_empty() {
            return Err(Status::invalid_argument("flow_token is required"));
        }
        let span = Span::current();
        span.record("flow", name);
        span.record("action", incoming.action.as_str());
        span.record("screen", incoming.screen.as_str());
        span.record("token_hash", token_hash(&incoming.flow_token));
        span.record("request_id", context.request_id.as_str());
        span.record("attempt", context.attempt);
        let key = Some(context.idempotency_key.clone()).filter(|k| !k.is_empty());
        Ok(Call {
            flows,
            store,
            name,
            flow,
            action: incoming.action,
            request: Request {
                context,
                flow_token: incoming.flow_token,
                screen: incoming.screen,
                ..Request::default()
            },
            key,
            claimed: false,
        })
    }

    /// Step 2: under `signed`, only a token issued for this flow, unexpired and
    /// untouched, goes on; its claims reach the handler.
    fn token_policy(&mut self) -> Result<(), Early> {
        if let TokenPolicy::Signed(secret) = &self.flows.tokens {
            let claims = tokens::verify(
                secret,
                &self.request.flow_token,
                self.name,
                SystemTime::now(),
            )
            .map_err(|reason| Early::Refused(reason.to_string()))?;
            self.request.claims = Some(claims);
        }
        Ok(())
    }

    /// Step 3: the screen data as a JSON object.
    fn read_data(&mut self, data: Option<prost_types::Struct>) -> Result<(), Early> {
        self.request.data = struct_to_json(&data.unwrap_or_default(), "data")
            .map_err(|e| Early::Failed(Status::invalid_argument(e.to_string())))?;
        Ok(())
    }

    /// Step 4: claims the idempotency key, or answers the call it already names.
    async fn claim(&mut self) -> Result<(), Early> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        match self
            .store
            .claim(&self.request.flow_token, key)
            .await
            .map_err(unavailable)?
        {
            Claim::Claimed => {
                self.claimed = true;
                Ok(())
            }
            // A completion is answered again as it was; any other stored answer gives
            // way once the token is completed (the user reopening a finished flow sends
            // the same INIT as the first time).
            Claim::Done(outcome @ Outcome::Complete { .. }) => Err(Early::Stored(outcome)),
            Claim::Done(outcome) => {
                self.single_use().await?;
                Err(Early::Stored(outcome))
            }
            Claim::InProgress => {
                tracing::info!("the same call is still in progress");
                Err(Early::Failed(Status::unavailable(
                    "the same call is still in progress; retry shortly",
                )))
            }
        }
    }

    /// Step 5: a completed token is refused.
    async fn single_use(&self) -> Result<(), Early> {
        if self
            .store
            .is_completed(&self.request.flow_token)
            .await
            .map_err(unavailable)?
        {
            return Err(Early::Refused("the token was already completed".into()));
        }
        Ok(())
    }

    /// Step 6: the token's session, loaded for the handler.
    async fn load_session(&mut self) -> Result<(), Early> {
        let values = self
            .store
            .session(&self.request.flow_token)
            .await
            .map_err(unavailable)?;
        self.request.session = Session::new(values);
        Ok(())
    }

    /// Step 7: the flow's handler for the action, in its own span (a child of the
    /// server span).
    async fn handler(&self) -> Result<Outcome, Early> {
        let span = tracing::info_span!(
            "flow.handler",
            flow = self.name,
            action = self.action.as_str(),
            screen = %self.request.screen,
        );
        let request = self.request.clone();
        let outcome = match self.action {
            Action::Init => self.flow.init(request).instrument(span).await,
            Action::Back => self.flow.back(request).instrument(span).await,
            Action::DataExchange => self.flow.data_exchange(request).instrument(span).await,
        };
        outcome.map_err(|e| Early::Failed(crate::service::to_status(e)))
    }

    /// Step 8: the answer against the flow's Flow JSON — always counted and logged,
    /// refused in strict mode.
    fn check_flow_json(&self, outcome: &Outcome) -> Result<(), Early> {
        let violation = self.flow.flow_json().and_then(|flow_json| {
            flow_json
                .check(self.action, &self.request.screen, outcome)
                .err()
        });
        let Some(violation) = violation else {
            return Ok(());
        };
        self.flows.violations.fetch_add(1, Ordering::Relaxed);
        // Violations name screens and fields, never their values.
        let error_key = violation.error_key();
        if self.flows.strict {
            tracing::error!(
                error_key,
                %violation,
                "answer refused: it breaks the flow's Flow JSON (strict mode)",
            );
            return Err(Early::Failed(Status::internal(format!(
                "the flow's answer breaks its Flow JSON: {violation}"
            ))));
        }
        tracing::warn!(
            error_key,
            %violation,
            "answer breaks the flow's Flow JSON; sent anyway",
        );
        Ok(())
    }

    /// Step 9: the outcome, the completion and the session's changes, in one atomic write.
    async fn commit(&self, outcome: &Outcome) -> Result<(), Early> {
        let finished = self
            .store
            .finish(
                self.name,
                &self.request.flow_token,
                self.key.as_deref(),
                outcome,
                self.request.session.changes().as_ref(),
            )
            .await
            .map_err(unavailable)?;
        match finished {
            Finished::Recorded => Ok(()),
            Finished::AlreadyCompleted => Err(Early::Refused(
                "another call completed the token first".into(),
            )),
        }
    }

    /// The reply, however the call ended: the outcome recorded on the span and the
    /// call logged once; a failed call's claim released.
    async fn answer(
        self,
        ended: Result<(Outcome, FlowResponse), Early>,
    ) -> Result<FlowResponse, Status> {
        let span = Span::current();
        match ended {
            Ok((outcome, response)) => {
                span.record("outcome", outcome_kind(&outcome));
                tracing::info!("flow call");
                Ok(response)
            }
            Err(Early::Stored(outcome)) => {
                span.record("outcome", outcome_kind(&outcome));
                tracing::info!("repeated call answered with its stored outcome");
                outcome_to_proto(outcome)
            }
            Err(Early::Refused(reason)) => {
                let outcome = Outcome::token_invalid(TOKEN_NO_LONGER_VALID);
                span.record("outcome", outcome_kind(&outcome));
                tracing::info!(reason, "flow token refused");
                outcome_to_proto(outcome)
            }
            Err(Early::Failed(status)) => {
                if let (true, Some(key)) = (self.claimed, &self.key) {
                    // Nothing was recorded for this call: free its key so a retry runs it.
                    if let Err(error) = self.store.release(&self.request.flow_token, key).await {
                        tracing::warn!(
                            %error,
                            "could not release an idempotency key; it lapses by itself",
                        );
                    }
                }
                Err(status)
            }
        }
    }
}

/// The one mapping of a store failure: logged here, `UNAVAILABLE` to the caller.
fn unavailable(error: StoreError) -> Early {
    tracing::warn!(%error, "database unavailable");
    Early::Failed(Status::unavailable(
        "the flow service's database is unavailable",
    ))
}

/// What kind of answer an outcome is, for the span and the logs.
fn outcome_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Screen {
            error_message: None,
            ..
        } => "screen",
        Outcome::Screen {
            error_message: Some(_),
            ..
        } => "screen_with_error",
        Outcome::Complete { .. } => "complete",
        Outcome::TokenInvalid { .. } => "token_invalid",
    }
}
