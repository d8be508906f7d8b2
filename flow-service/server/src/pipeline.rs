//! The call pipeline: what happens around the handler of every `INIT`,
//! `data_exchange` and `BACK` call, for every flow, as named steps that [`run`] and
//! [`Call::execute`] read top to bottom.
//!
//! 1. [`Call::route`] — the flow by name; a flow token is required. The call's fields
//!    (flow, action, screen, token_hash, request_id, attempt) are recorded once, on the
//!    current span — the server span of [`crate::server`] — so that every log line and
//!    span of the call carries them without repeating them;
//! 2. [`Call::token_policy`] — under `signed`, a token that is not valid for this flow
//!    is refused ("token no longer valid") without touching the store;
//! 3. [`Call::read_data`] — the screen data, as JSON;
//! 4. single flight ([`Calls`]) — a call with an idempotency key that is already
//!    running in this process waits for that call's answer and shares it; one that
//!    finished here recently gets its outcome from memory. A new call runs the steps
//!    below in its caller's task, and goes on as a task of its own should its caller go
//!    away, so that it finishes (and its answer is kept for the resend) all the same;
//! 5. [`Call::open`] — where the store claims calls ([`Store::claims_calls`]:
//!    PostgreSQL, memory), the idempotency key is claimed first (a call still in
//!    progress on another replica: `UNAVAILABLE`), with the read below in the same
//!    statement on PostgreSQL ([`Store::claim_and_open`]); then one read gives the token's
//!    completion, the key's stored outcome and the session. A call seen before gets
//!    its stored outcome and the handler does not run again — except that once the
//!    token is completed only the completion itself is answered again; a completed
//!    token is refused;
//! 6. [`Call::handler`] — the flow's handler, in a span of its own;
//! 7. [`Call::check_flow_json`] — the answer against the flow's Flow JSON: counted and
//!    logged, and refused in strict mode;
//! 8. [`Call::commit`] — a completion, with its outcome, in one durable transaction
//!    before the answer leaves (of two calls racing to complete one token, the store
//!    lets one win; the other is refused, unless it was the same call); any other
//!    outcome is kept ([`Store::keep`]): the session's changes, and the outcome where
//!    the store shares it between replicas, without waiting for the disk.
//!
//! A step either lets the call go on or ends it with an [`Early`] answer; [`Call::answer`]
//! turns either into the reply, records the outcome on the span and logs the call
//! once. A call that fails after claiming its key releases it, so a retry runs again;
//! so does one refused (its token completed), so that a resend is refused again at once.
//! Any store failure is `UNAVAILABLE` (HTTP 503), and nothing half-written remains.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use flowgate_proto::json::struct_to_json;
use flowgate_proto::v1::{self, FlowResponse, flow_response};
use tokio::sync::{Notify, watch};
use tonic::Status;
use tracing::{Instrument, Span};

use crate::sdk::{Action, Flow, Outcome, Request, Session};
use crate::service::{
    Flows, TOKEN_NO_LONGER_VALID, context_from_proto, outcome_ref_to_proto, outcome_to_proto,
};
use crate::store::{CLAIM_LEASE, Finished, Opening, Store, StoreError, TokenKey};
use crate::tokens::{self, TokenPolicy};

/// The proto fields of an `INIT`, `data_exchange` or `BACK` call.
pub(crate) struct Incoming {
    pub action: Action,
    /// When the caller stops waiting (`grpc-timeout`); the work stops then too.
    pub deadline: Option<Instant>,
    pub context: Option<v1::RequestContext>,
    pub flow_token: String,
    pub screen: String,
    pub data: Option<prost_types::Struct>,
}

/// What a call answers: what [`run`] returns, shared with the same call's waiters.
type Answer = Result<FlowResponse, Status>;

/// Runs one call through every step, in order.
pub(crate) async fn run(
    flows: &Arc<Flows>,
    store: &Arc<dyn Store>,
    calls: &Arc<Calls>,
    mut incoming: Incoming,
) -> Answer {
    let data = incoming.data.take();
    let deadline = incoming.deadline;
    let mut call = Call::route(flows, store, incoming)?;
    if let Err(early) = call.token_policy().and_then(|()| call.read_data(data)) {
        return call.answer(Err(early)).await.0;
    }
    let Some(id) = call.id() else {
        // Without a key there is nothing to recognise a resend by.
        return call.execute().await.0;
    };
    match calls.join(id) {
        Joined::Lead(lead) => {
            Detached::new(async move {
                // The work outlives a caller that goes away, but not the call's
                // deadline: past it, the gateway has answered already.
                let (answer, outcome) = call.execute_by(deadline).await;
                lead.finish(answer, outcome)
            })
            .await
        }
        Joined::Wait(answer) => {
            let answer = match tokio::time::timeout(CLAIM_LEASE, wait(answer)).await {
                Ok(answer) => answer,
                Err(_) => Err(still_in_progress()),
            };
            if let Ok(response) = &answer {
                Span::current().record("outcome", response_kind(response));
            }
            tracing::info!("the same call, in flight at once, answered this one too");
            answer
        }
        Joined::Recent(outcome) => {
            call.recent = Some(outcome);
            call.execute().await.0
        }
    }
}

/// The answer the leading call of an id sends; `INTERNAL` if it ended without one (a
/// panic).
async fn wait(mut answer: watch::Receiver<Option<Answer>>) -> Answer {
    match answer.wait_for(Option::is_some).await {
        Ok(answer) => answer.clone().expect("waited for an answer"),
        Err(_) => Err(call_failed()),
    }
}

fn call_failed() -> Status {
    Status::internal("the call failed; see the flow service's log")
}

/// A new call's work, run in its caller's task: no task of its own to start, and no
/// hand-over of the answer from one task to another, on every call. Should the caller
/// go away before the work is done (the gateway's deadline, a dropped connection), the
/// rest of the work becomes a task of its own then, in the call's span, so that it
/// still finishes, keeps its outcome for the resend and answers the callers waiting for
/// it. A panic in the work is the caller's `INTERNAL`, as it is the waiters'.
struct Detached<F: Future<Output = Answer> + Send + 'static> {
    /// `None` once it has answered.
    work: Option<Pin<Box<F>>>,
    span: Span,
    /// Running as a task of its own already: dropped, it is dropped (the runtime is
    /// ending), not spawned again.
    own_task: bool,
}

impl<F: Future<Output = Answer> + Send + 'static> Detached<F> {
    fn new(work: F) -> Self {
        Self {
            work: Some(Box::pin(work)),
            span: Span::current(),
            own_task: false,
        }
    }
}

impl<F: Future<Output = Answer> + Send + 'static> Future for Detached<F> {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let work = self.work.as_mut().expect("polled after it answered");
        // After a panic the work's state is dropped whole (its lead with it, which
        // answers the waiters). The flow's own code is caught closer, in
        // `Call::handler`; this is for the steps around it.
        match ready!(poll_caught(work.as_mut(), cx)) {
            Ok(answer) => {
                self.work = None;
                Poll::Ready(answer)
            }
            Err(Panicked) => {
                self.work = None;
                tracing::error!("the call panicked; its callers get INTERNAL");
                Poll::Ready(Err(call_failed()))
            }
        }
    }
}

/// A future that panicked.
struct Panicked;

/// Polls `future`, a panic in it coming out as [`Panicked`] instead of unwinding into
/// the caller. The caller drops the future then, and never polls it again, so nothing
/// it left half-changed is seen.
fn poll_caught<F: Future + ?Sized>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<Result<F::Output, Panicked>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
        Ok(poll) => poll.map(Ok),
        Err(_) => Poll::Ready(Err(Panicked)),
    }
}

impl<F: Future<Output = Answer> + Send + 'static> Drop for Detached<F> {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else {
            return;
        };
        // Without a runtime, or dropped in its own task, the process is ending: the work
        // is dropped, its lead with it, and the waiters get `INTERNAL`. (A key the store
        // claimed stays claimed until its lease ends, as when a process dies mid-call.)
        if !self.own_task
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let span = std::mem::replace(&mut self.span, Span::none());
            let rest = Detached {
                work: Some(work),
                span: span.clone(),
                own_task: true,
            };
            // Still catching a panic, for the log line and the waiters' `INTERNAL`.
            runtime.spawn(rest.instrument(span));
        }
    }
}

fn past_deadline() -> Status {
    tracing::info!("the call's deadline passed before it finished; its work stopped");
    Status::deadline_exceeded("the call's deadline passed before it finished")
}

/// The instant a call's `grpc-timeout` header (gRPC over HTTP/2: 1 to 8 digits and a
/// unit, `H`, `M`, `S`, `m`, `u` or `n`) ends, if it has a valid one. Read here because
/// tonic enforces the header by dropping the handler's future and offers no parser of
/// it, while a call's work here may outlive the handler's future ([`Detached`]).
pub(crate) fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(value.checked_mul(3600)?),
        "M" => Duration::from_secs(value.checked_mul(60)?),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

fn still_in_progress() -> Status {
    tracing::info!("the same call is still in progress");
    Status::unavailable("the same call is still in progress; retry shortly")
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

/// One call on its way through the pipeline. It owns what it needs, so that it can
/// run as a task of its own.
struct Call {
    flows: Arc<Flows>,
    store: Arc<dyn Store>,
    /// The flow's registered name (the default flow's, for an empty name).
    name: String,
    flow: Arc<dyn Flow>,
    action: Action,
    request: Request,
    /// The idempotency key, when the call has one.
    key: Option<String>,
    /// The flow token's key in the store (its hex SHA-256), computed once: what every
    /// store operation of the call names the token by, and half of the call's [`CallId`].
    token: TokenKey,
    /// The outcome this process kept for the same call, when it finished here before.
    recent: Option<Outcome>,
    /// Whether this call holds its key's claim, to release it if the call fails.
    claimed: bool,
}

impl Call {
    /// Step 1: the flow by name, and the call's fields on the span.
    fn route(
        flows: &Arc<Flows>,
        store: &Arc<dyn Store>,
        incoming: Incoming,
    ) -> Result<Self, Status> {
        let context = context_from_proto(incoming.context);
        let (name, flow) = flows.get(&context.flow)?;
        if incoming.flow_token.is_empty() {
            return Err(Status::invalid_argument("flow_token is required"));
        }
        let token = TokenKey::new(&incoming.flow_token);
        // One record for all six: each record is a round of every layer's bookkeeping.
        tracing::record_all!(
            Span::current(),
            flow = name,
            action = incoming.action.as_str(),
            screen = incoming.screen.as_str(),
            token_hash = token.log_hash(),
            request_id = context.request_id.as_str(),
            attempt = context.attempt,
        );
        let key = Some(context.idempotency_key.clone()).filter(|k| !k.is_empty());
        Ok(Call {
            flows: flows.clone(),
            store: store.clone(),
            name: name.to_owned(),
            flow: flow.clone(),
            action: incoming.action,
            request: Request {
                context,
                flow_token: incoming.flow_token,
                screen: incoming.screen,
                ..Request::default()
            },
            key,
            token,
            recent: None,
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
                &self.name,
                SystemTime::now(),
            )
            .map_err(|reason| Early::Refused(reason.to_string()))?;
            self.request.claims = Some(claims);
        }
        Ok(())
    }

    /// Step 3: the screen data as a JSON object.
    fn read_data(&mut self, data: Option<prost_types::Struct>) -> Result<(), Early> {
        self.request.data = struct_to_json(data.unwrap_or_default(), "data")
            .map_err(|e| Early::Failed(Status::invalid_argument(e.to_string())))?;
        Ok(())
    }

    /// What tells this call apart from others, for step 4: the token's key and the
    /// idempotency key.
    fn id(&self) -> Option<CallId> {
        let key = self.key.as_ref()?;
        Some(CallId {
            token: self.token,
            key: key.clone(),
        })
    }

    /// Steps 5 to 8, and the answer; with the outcome to keep for a resend, when the
    /// call has one.
    async fn execute(self) -> (Answer, Option<Outcome>) {
        self.execute_by(None).await
    }

    /// [`Call::execute`], its work stopped at `deadline`. A call stopped so is a failed
    /// call: its answer says so, and its claim is released like any failed call's, so
    /// that a resend runs at once rather than finding the key still claimed until the
    /// lease ends. (A completion whose commit had reached the store still holds: the
    /// release frees only a claim with no outcome, and the token's completion stays.
    /// A claim whose statement was stopped before its reply came is not known to be
    /// this call's, so it is left to its lease: releasing it could free another
    /// replica's claim.)
    async fn execute_by(mut self, deadline: Option<Instant>) -> (Answer, Option<Outcome>) {
        let work = async {
            self.open().await?;
            let outcome = self.handler().await?;
            self.check_flow_json(&outcome)?;
            // Unusable data is refused before anything is recorded.
            let response = outcome_ref_to_proto(&outcome).map_err(Early::Failed)?;
            self.commit(&outcome).await?;
            Ok((outcome, response))
        };
        let ended = match deadline {
            Some(at) => tokio::time::timeout_at(at.into(), work)
                .await
                .unwrap_or_else(|_| Err(Early::Failed(past_deadline()))),
            None => work.await,
        };
        self.answer(ended).await
    }

    /// Step 5: claims the idempotency key where the store claims calls, and reads the
    /// token's completion, the key's stored outcome and the session. A call seen
    /// before is answered with its stored outcome; a completed token is refused.
    async fn open(&mut self) -> Result<(), Early> {
        if let Some(outcome) = self.recent.take() {
            return self.again(outcome, None).await;
        }
        let opened = match self.key.as_deref() {
            Some(key) if self.store.claims_calls() => {
                match self
                    .store
                    .claim_and_open(&self.token, key)
                    .await
                    .map_err(unavailable)?
                {
                    Opening::Claimed(opened) => {
                        self.claimed = true;
                        opened
                    }
                    Opening::Done(outcome) => return self.again(outcome, None).await,
                    Opening::InProgress => return Err(Early::Failed(still_in_progress())),
                }
            }
            look_up => self
                .store
                .open_call(&self.token, look_up)
                .await
                .map_err(unavailable)?,
        };
        if let Some(outcome) = opened.stored {
            return self.again(outcome, Some(opened.completed)).await;
        }
        if opened.completed {
            return Err(Early::Refused("the token was already completed".into()));
        }
        self.request.session = Session::new(opened.session);
        Ok(())
    }

    /// A repeated call: a completion is answered again as it was; any other stored
    /// answer gives way once the token is completed (the user reopening a finished
    /// flow sends the same INIT as the first time). `completed`, when the caller read
    /// it already.
    async fn again(&self, outcome: Outcome, completed: Option<bool>) -> Result<(), Early> {
        if !matches!(outcome, Outcome::Complete { .. }) {
            let completed = match completed {
                Some(completed) => completed,
                None => self
                    .store
                    .is_completed(&self.token)
                    .await
                    .map_err(unavailable)?,
            };
            if completed {
                return Err(Early::Refused("the token was already completed".into()));
            }
        }
        Err(Early::Stored(outcome))
    }

    /// Step 6: the flow's handler for the action, in its own span (a child of the
    /// server span). A log line shows only its innermost span's fields, so the lines a
    /// flow logs carry the request id and trace id from this span.
    async fn handler(&mut self) -> Result<Outcome, Early> {
        let span = tracing::info_span!(
            target: flowgate_telemetry::TRACE,
            "flow.handler",
            flow = self.name,
            action = self.action.as_str(),
            screen = %self.request.screen,
            request_id = self.request.context.request_id.as_str(),
            trace_id = tracing::field::Empty,
        );
        // The server span's: asking this span for its own would build it for nothing.
        flowgate_telemetry::record_trace_id(&span, &Span::current());
        // The data goes to the handler rather than a copy of it: no later step reads it.
        let data = std::mem::take(&mut self.request.data);
        let request = Request {
            data,
            ..self.request.clone()
        };
        let run = match self.action {
            Action::Init => self.flow.init(request),
            Action::Back => self.flow.back(request),
            Action::DataExchange => self.flow.data_exchange(request),
        };
        let mut run = std::pin::pin!(run.instrument(span));
        // A panic in the flow's code fails the call as the flow's own internal error
        // would: nothing is kept and its key is released, so a resend runs it again.
        let outcome = std::future::poll_fn(|cx| poll_caught(run.as_mut(), cx))
            .await
            .unwrap_or_else(|Panicked| {
                Err(crate::sdk::FlowError::Internal(
                    "the flow's handler panicked".into(),
                ))
            });
        outcome.map_err(|e| Early::Failed(crate::service::to_status(e)))
    }

    /// Step 7: the answer against the flow's Flow JSON — always counted and logged,
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

    /// Step 8: a completion, its outcome and the session's end in one durable
    /// transaction; any other outcome kept with the session's changes.
    async fn commit(&self, outcome: &Outcome) -> Result<(), Early> {
        let token = &self.token;
        let session = self.request.session.changes();
        if !matches!(outcome, Outcome::Complete { .. }) {
            return self
                .store
                .keep(
                    &self.name,
                    token,
                    self.key.as_deref(),
                    outcome,
                    session.as_ref(),
                )
                .await
                .map_err(unavailable);
        }
        let finished = self
            .store
            .finish(
                &self.name,
                token,
                self.key.as_deref(),
                outcome,
                session.as_ref(),
            )
            .await
            .map_err(unavailable)?;
        match finished {
            Finished::Recorded => Ok(()),
            Finished::AlreadyCompleted => {
                // The same call, run at once by another process on the database
                // without a claim (SQLite), completed it: its answer is this one's.
                if let Some(key) = self.key.as_deref() {
                    let opened = self
                        .store
                        .open_call(token, Some(key))
                        .await
                        .map_err(unavailable)?;
                    if let Some(stored @ Outcome::Complete { .. }) = opened.stored {
                        return Err(Early::Stored(stored));
                    }
                }
                Err(Early::Refused(
                    "another call completed the token first".into(),
                ))
            }
        }
    }

    /// The reply, however the call ended: the outcome recorded on the span and the
    /// call logged once; a failed call's claim released. With the reply, the outcome
    /// to keep for a resend, when the call has one.
    async fn answer(
        self,
        ended: Result<(Outcome, FlowResponse), Early>,
    ) -> (Answer, Option<Outcome>) {
        let span = Span::current();
        match ended {
            Ok((outcome, response)) => {
                span.record("outcome", outcome_kind(&outcome));
                tracing::info!("flow call");
                (Ok(response), Some(outcome))
            }
            Err(Early::Stored(outcome)) => {
                span.record("outcome", outcome_kind(&outcome));
                tracing::info!("repeated call answered with its stored outcome");
                (outcome_ref_to_proto(&outcome), Some(outcome))
            }
            Err(Early::Refused(reason)) => {
                // A refusal is not recorded either: its resend is refused again, at once.
                self.release_claim().await;
                let outcome = Outcome::token_invalid(TOKEN_NO_LONGER_VALID);
                span.record("outcome", outcome_kind(&outcome));
                tracing::info!(reason, "flow token refused");
                (outcome_to_proto(outcome), None)
            }
            Err(Early::Failed(status)) => {
                // Nothing was recorded for this call: free its key so a retry runs it.
                self.release_claim().await;
                (Err(status), None)
            }
        }
    }

    /// Gives up the call's claim on its key, if it holds one.
    async fn release_claim(&self) {
        if let (true, Some(key)) = (self.claimed, &self.key)
            && let Err(error) = self.store.release(&self.token, key).await
        {
            tracing::warn!(
                %error,
                "could not release an idempotency key; it lapses by itself",
            );
        }
    }
}

/// How many finished calls a process remembers ([`Calls`]), and for how long.
const RECENT_CALLS: usize = 32 * 1024;
const RECENT_CALL_TTL: Duration = Duration::from_secs(3600);

/// A call, as its resends name it: the flow token's key (its SHA-256) and the
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CallId {
    token: TokenKey,
    key: String,
}

/// The calls of one process, by [`CallId`]: those running now, whose answer the same
/// call arriving meanwhile waits for (single flight), and the outcomes of those
/// finished lately, for resends — the only record of a step that did not complete
/// its token where the store does not share outcomes (SQLite; see
/// [`Store::claims_calls`]). Bounded: the oldest finished calls go first, past
/// [`RECENT_CALLS`] entries or [`RECENT_CALL_TTL`].
///
/// Cancellation: a new call runs in its caller's task until done or until the caller
/// goes away (the gateway's deadline, a dropped connection), and then as a task of its
/// own ([`Detached`]), so that a caller going away neither stops it half-way nor
/// strands its waiters; and if it ends without an answer (a panic), its entry goes and
/// its callers get `INTERNAL`. At shutdown, [`Calls::settled`] waits for such work
/// before the store closes.
#[derive(Debug)]
pub(crate) struct Calls {
    table: Mutex<Table>,
    capacity: usize,
    ttl: Duration,
    /// Told when the last [`Lead`] goes: nothing of a call with a key runs any more.
    settled: Notify,
}

#[derive(Debug, Default)]
struct Table {
    /// Hashed with foldhash, seeded per table, rather than std's SipHash: a call's id
    /// is two SHA-256 digests (the token's and the gateway's idempotency key), which no
    /// caller can steer into collisions, and SipHash over their 128 hex digits cost
    /// about 600 instructions a lookup, three lookups a call.
    entries: HashMap<CallId, Entry, foldhash::fast::RandomState>,
    /// Finished calls, oldest first: their id and sequence number (which tells the
    /// entry from a later one under the same id) and when they finished.
    finished: VecDeque<(CallId, u64, Instant)>,
    sequence: u64,
    /// [`Lead`]s not yet dropped: calls with a key whose work may still run.
    leads: usize,
}

#[derive(Debug)]
enum Entry {
    Running(watch::Receiver<Option<Answer>>),
    Done {
        outcome: Outcome,
        sequence: u64,
        at: Instant,
    },
}

/// What [`Calls::join`] found.
enum Joined {
    /// A new call: run it and [`Lead::finish`] it.
    Lead(Lead),
    /// The same call is running: its answer, once there.
    Wait(watch::Receiver<Option<Answer>>),
    /// The same call finished lately: its outcome.
    Recent(Outcome),
}

impl Default for Calls {
    fn default() -> Self {
        Self::new(RECENT_CALLS, RECENT_CALL_TTL)
    }
}

impl Calls {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            table: Mutex::default(),
            capacity,
            ttl,
            settled: Notify::new(),
        }
    }

    /// The table's lock. Nothing panics while holding it, so a poisoned lock still
    /// guards whole data.
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The call `id`: running, finished lately, or new — then this caller leads it.
    fn join(self: &Arc<Self>, id: CallId) -> Joined {
        let mut table = self.table();
        match table.entries.get(&id) {
            Some(Entry::Running(answer)) => return Joined::Wait(answer.clone()),
            Some(Entry::Done { outcome, at, .. }) if at.elapsed() < self.ttl => {
                return Joined::Recent(outcome.clone());
            }
            _ => {}
        }
        let (sender, receiver) = watch::channel(None);
        table.entries.insert(id.clone(), Entry::Running(receiver));
        table.leads += 1;
        Joined::Lead(Lead {
            calls: self.clone(),
            id,
            sender,
            finished: false,
        })
    }

    /// How many calls with a key are running: in their caller's task, or in a task of
    /// their own since their caller went away ([`Detached`]).
    pub(crate) fn running(&self) -> usize {
        self.table().leads
    }

    /// Once no call with a key runs any more. Calls joining meanwhile are waited for
    /// too; at shutdown none come, the connections being closed.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the count is read: a last lead going in between still
            // wakes this.
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How many calls are running or remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().entries.len()
    }
}

/// The right and duty to answer a new call: [`Lead::finish`], or, when dropped
/// without it, the call's entry goes (its waiters then get `INTERNAL`).
struct Lead {
    calls: Arc<Calls>,
    id: CallId,
    sender: watch::Sender<Option<Answer>>,
    finished: bool,
}

impl Lead {
    /// Remembers `outcome` (when the call has one) for resends, answers every caller
    /// waiting, and returns the answer for its own caller.
    fn finish(mut self, answer: Answer, outcome: Option<Outcome>) -> Answer {
        self.finished = true;
        let last = {
            let calls = &self.calls;
            let mut table = calls.table();
            table.leads -= 1;
            match outcome {
                Some(outcome) => {
                    let now = Instant::now();
                    table.sequence += 1;
                    let sequence = table.sequence;
                    let done = Entry::Done {
                        outcome,
                        sequence,
                        at: now,
                    };
                    // The call's `Running` entry is replaced where it stands: no copy
                    // of the id, no second insertion.
                    match table.entries.get_mut(&self.id) {
                        Some(entry) => *entry = done,
                        None => {
                            table.entries.insert(self.id.clone(), done);
                        }
                    }
                    table.finished.push_back((self.id.clone(), sequence, now));
                    table.evict(calls.capacity, calls.ttl, now);
                }
                // Nothing to answer a resend with: it runs again.
                None => {
                    table.entries.remove(&self.id);
                }
            }
            table.leads == 0
        };
        if last {
            self.calls.settled.notify_waiters();
        }
        // The call's own entry is gone from the table: whoever still holds a
        // receiver is a caller waiting, and only then is the answer copied.
        if self.sender.receiver_count() > 0 {
            self.sender.send_replace(Some(answer.clone()));
        }
        answer
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let last = {
            let mut table = self.calls.table();
            if matches!(table.entries.get(&self.id), Some(Entry::Running(_))) {
                table.entries.remove(&self.id);
            }
            table.leads -= 1;
            table.leads == 0
        };
        if last {
            self.calls.settled.notify_waiters();
        }
    }
}

impl Table {
    /// Forgets the oldest finished calls past `capacity`, and those older than `ttl`.
    fn evict(&mut self, capacity: usize, ttl: Duration, now: Instant) {
        while let Some((id, sequence, at)) = self.finished.front() {
            if self.finished.len() <= capacity && now.duration_since(*at) < ttl {
                break;
            }
            if matches!(self.entries.get(id), Some(Entry::Done { sequence: s, .. }) if s == sequence)
            {
                self.entries.remove(id);
            }
            self.finished.pop_front();
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

/// What kind of answer a reply is, for the span of a call that shared another's.
fn response_kind(response: &FlowResponse) -> &'static str {
    match &response.outcome {
        Some(flow_response::Outcome::NextScreen(next)) if next.error_message.is_some() => {
            "screen_with_error"
        }
        Some(flow_response::Outcome::NextScreen(_)) => "screen",
        Some(flow_response::Outcome::Complete(_)) => "complete",
        Some(flow_response::Outcome::TokenInvalid(_)) => "token_invalid",
        None => "none",
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;

    use flowgate_proto::json::struct_from_json;
    use flowgate_proto::v1::flow_service_server::FlowService;
    use serde_json::{Value, json};
    use tokio::sync::{Notify, Semaphore};

    use super::*;
    use crate::sdk::FlowError;
    use crate::service::FlowServer;

    #[test]
    fn grpc_timeouts_become_deadlines() {
        let within = |text: &str| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("grpc-timeout", text.parse().unwrap());
            deadline(&metadata).map(|at| at.saturating_duration_since(Instant::now()))
        };
        let seconds = within("2S").unwrap();
        assert!(seconds > Duration::from_millis(1_900) && seconds <= Duration::from_secs(2));
        assert!(within("250m").unwrap() <= Duration::from_millis(250));
        assert!(within("1H").unwrap() > Duration::from_secs(3_500));
        assert!(within("99999999n").unwrap() < Duration::from_millis(100));
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "5 S"] {
            assert_eq!(within(bad), None, "{bad:?}");
        }
        assert_eq!(deadline(&tonic::metadata::MetadataMap::new()), None);
    }
    use crate::store::{self, MemoryStore, StoreOptions};

    /// A flow whose `WAIT` (a screen) and `DONE` (a completion) steps count their runs,
    /// say they started, and answer only once the test lets one through; `REMEMBER`
    /// keeps `data.x` in the session and `RECALL` answers it.
    #[derive(Clone)]
    struct Gate {
        runs: Arc<AtomicUsize>,
        started: Arc<Notify>,
        open: Arc<Semaphore>,
    }

    impl Gate {
        fn new() -> Self {
            Self {
                runs: Arc::default(),
                started: Arc::default(),
                open: Arc::new(Semaphore::new(0)),
            }
        }

        fn runs(&self) -> usize {
            self.runs.load(Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl Flow for Gate {
        async fn init(&self, _request: Request) -> Result<Outcome, FlowError> {
            Ok(Outcome::screen("START", json!({})))
        }

        async fn data_exchange(&self, request: Request) -> Result<Outcome, FlowError> {
            match request.screen.as_str() {
                "REMEMBER" => {
                    let x = request.data.get("x").cloned().unwrap_or(Value::Null);
                    request.session.set("x", x);
                    Ok(Outcome::screen("RECALL", json!({})))
                }
                "PANIC" => {
                    self.runs.fetch_add(1, Ordering::SeqCst);
                    self.started.notify_one();
                    self.open.acquire().await.expect("never closed").forget();
                    panic!("a bug in the handler")
                }
                "RECALL" => Ok(Outcome::screen(
                    "END",
                    json!({"x": request.session.get("x")}),
                )),
                screen => {
                    let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
                    self.started.notify_one();
                    self.open.acquire().await.expect("never closed").forget();
                    Ok(if screen == "DONE" {
                        Outcome::complete(json!({"run": run}))
                    } else {
                        Outcome::screen("NEXT", json!({"run": run}))
                    })
                }
            }
        }
    }

    fn server(gate: &Gate, store: Arc<dyn Store>) -> FlowServer {
        FlowServer::new(Flows::new().register("gate", gate.clone()), store)
    }

    fn step(
        token: &str,
        screen: &str,
        key: &str,
        data: Value,
    ) -> tonic::Request<v1::DataExchangeRequest> {
        tonic::Request::new(v1::DataExchangeRequest {
            context: Some(v1::RequestContext {
                flow: "gate".into(),
                idempotency_key: key.into(),
                ..Default::default()
            }),
            flow_token: token.into(),
            screen: screen.into(),
            data: Some(struct_from_json(data.as_object().unwrap(), "data").unwrap()),
        })
    }

    /// A call, polled once (far enough to lead or to wait for its call), then going on
    /// as a task of its own, as tonic runs each call; aborting the task is its caller
    /// going away.
    async fn started(
        server: &FlowServer,
        token: &str,
        screen: &str,
        key: &str,
    ) -> tokio::task::JoinHandle<Answer> {
        let server = server.clone();
        let request = step(token, screen, key, json!({}));
        let mut call: Pin<Box<dyn Future<Output = Answer> + Send>> = Box::pin(async move {
            server
                .data_exchange(request)
                .await
                .map(tonic::Response::into_inner)
        });
        tokio::select! {
            biased;
            answer = &mut call => panic!("answered before its handler could finish: {answer:?}"),
            () = std::future::ready(()) => {}
        }
        tokio::spawn(call)
    }

    async fn call(server: &FlowServer, screen: &str, key: &str, data: Value) -> Answer {
        call_on(server, "tok", screen, key, data).await
    }

    async fn call_on(
        server: &FlowServer,
        token: &str,
        screen: &str,
        key: &str,
        data: Value,
    ) -> Answer {
        server
            .data_exchange(step(token, screen, key, data))
            .await
            .map(tonic::Response::into_inner)
    }

    fn screen_run(answer: &Answer) -> (String, f64) {
        match &answer.as_ref().expect("an answer").outcome {
            Some(flow_response::Outcome::NextScreen(next)) => {
                let data = struct_to_json(next.data.clone().unwrap(), "data").unwrap();
                (next.screen.clone(), data["run"].as_f64().unwrap())
            }
            Some(flow_response::Outcome::Complete(done)) => {
                let params = struct_to_json(done.params.clone().unwrap(), "params").unwrap();
                ("SUCCESS".into(), params["run"].as_f64().unwrap())
            }
            other => panic!("{other:?}"),
        }
    }

    fn ok(answer: &Answer) -> &FlowResponse {
        answer.as_ref().expect("an answer")
    }

    fn refused(answer: &Answer) -> bool {
        matches!(
            answer.as_ref().map(|r| &r.outcome),
            Ok(Some(flow_response::Outcome::TokenInvalid(_)))
        )
    }

    /// The stores a test runs on: memory, and a fresh SQLite file (kept in `dir`).
    async fn stores(dir: &tempfile::TempDir) -> Vec<Arc<dyn Store>> {
        let url = format!("sqlite://{}", dir.path().join("calls.db").display());
        vec![
            Arc::new(MemoryStore::default()),
            store::connect(&url, StoreOptions::default()).await.unwrap(),
        ]
    }

    #[tokio::test]
    async fn identical_calls_in_flight_at_once_share_one_run() {
        let dir = tempfile::tempdir().unwrap();
        for store in stores(&dir).await {
            for screen in ["WAIT", "DONE"] {
                let gate = Gate::new();
                let server = server(&gate, store.clone());
                let key = format!("{screen}-key");
                let first = started(&server, "tok", screen, &key).await;
                gate.started.notified().await;
                // The same call again while the first one's handler runs: it waits.
                let second = started(&server, "tok", screen, &key).await;
                gate.open.add_permits(1);
                let (first, second) = (first.await.unwrap(), second.await.unwrap());
                assert_eq!(ok(&first), ok(&second), "{}", store.backend());
                assert_eq!(screen_run(&first).1, 1.0);
                assert_eq!(gate.runs(), 1, "{}", store.backend());
                // A resend afterwards gets the same answer, without a run.
                assert_eq!(
                    ok(&call(&server, screen, &key, json!({})).await),
                    ok(&first)
                );
                assert_eq!(gate.runs(), 1);
                // Another key is another call (for a completed token: refused).
                gate.open.add_permits(1);
                let other = call(&server, screen, "another", json!({})).await;
                if screen == "DONE" {
                    assert!(refused(&other), "{other:?}");
                    // A new call of the completed token, claimed and refused, and its
                    // resend to another replica on the store: refused too, at once
                    // (the refusal left no claim behind).
                    let first = call(&server, screen, "new", json!({})).await;
                    assert!(refused(&first), "{first:?}");
                    let replica = self::server(&gate, store.clone());
                    let again = call(&replica, screen, "new", json!({})).await;
                    assert!(refused(&again), "{}: {again:?}", store.backend());
                } else {
                    assert_eq!(screen_run(&other).1, 2.0);
                }
            }
        }
    }

    #[tokio::test]
    async fn a_call_whose_caller_went_away_still_finishes_and_answers_the_others() {
        let dir = tempfile::tempdir().unwrap();
        for store in stores(&dir).await {
            for screen in ["WAIT", "DONE"] {
                let gate = Gate::new();
                let server = server(&gate, store.clone());
                // With a caller waiting: the first caller goes away (the gateway's
                // deadline) mid-handler; the one waiting gets the answer.
                let token = format!("{screen}-waited");
                let first = started(&server, &token, screen, "k").await;
                gate.started.notified().await;
                let waiter = started(&server, &token, screen, "k").await;
                first.abort();
                gate.open.add_permits(1);
                let answer = waiter.await.unwrap();
                assert_eq!(screen_run(&answer).1, 1.0, "{}", store.backend());
                // With nobody waiting: the call finishes all the same, and the resend
                // (waiting for it, or finding its outcome) gets its answer.
                let token = format!("{screen}-alone");
                let alone = started(&server, &token, screen, "k").await;
                gate.started.notified().await;
                alone.abort();
                gate.open.add_permits(1);
                let resent = call_on(&server, &token, screen, "k", json!({})).await;
                assert_eq!(screen_run(&resent).1, 2.0, "{}", store.backend());
                assert_eq!(gate.runs(), 2, "{}", store.backend());
            }
        }
    }

    #[tokio::test]
    async fn a_call_stopped_at_its_deadline_runs_again_when_resent() {
        let dir = tempfile::tempdir().unwrap();
        for store in stores(&dir).await {
            let gate = Gate::new();
            let server = server(&gate, store.clone());
            // The handler waits for the gate, which opens only after the deadline.
            let mut late = step("tok", "WAIT", "k", json!({}));
            late.metadata_mut()
                .insert("grpc-timeout", "50m".parse().unwrap());
            let status = server.data_exchange(late).await.unwrap_err();
            assert_eq!(
                status.code(),
                tonic::Code::DeadlineExceeded,
                "{}",
                store.backend()
            );
            // The resend runs at once: its key is not left claimed until the lease ends.
            gate.open.add_permits(1);
            let resent = call(&server, "WAIT", "k", json!({})).await;
            assert_eq!(
                screen_run(&resent),
                ("NEXT".into(), 2.0),
                "{}",
                store.backend()
            );
        }
    }

    #[tokio::test]
    async fn a_call_that_panics_answers_internal_to_its_callers_and_runs_again_when_resent() {
        let dir = tempfile::tempdir().unwrap();
        for store in stores(&dir).await {
            let gate = Gate::new();
            let server = server(&gate, store.clone());
            let internal = |answer: Answer| {
                let status = answer.expect_err("a panic is no answer");
                assert_eq!(status.code(), tonic::Code::Internal, "{}", store.backend());
            };
            // The caller whose task ran the handler, and one waiting for the same call.
            let first = started(&server, "tok", "PANIC", "k").await;
            gate.started.notified().await;
            let waiter = started(&server, "tok", "PANIC", "k").await;
            gate.open.add_permits(1);
            internal(first.await.unwrap());
            internal(waiter.await.unwrap());
            // The same call again runs again: it is neither left waiting for the one
            // that panicked nor refused for a key still claimed (memory store).
            gate.open.add_permits(1);
            internal(call(&server, "PANIC", "k", json!({})).await);
            assert_eq!(gate.runs(), 2, "{}", store.backend());
            // The service goes on answering.
            gate.open.add_permits(1);
            let next = call(&server, "WAIT", "k2", json!({})).await;
            assert_eq!(screen_run(&next).1, 3.0, "{}", store.backend());
        }
    }

    #[tokio::test]
    async fn a_completion_and_its_resend_hold_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("restart.db").display());
        let gate = Gate::new();
        gate.open.add_permits(10);
        let before = {
            let store = store::connect(&url, StoreOptions::default()).await.unwrap();
            let server = server(&gate, store.clone());
            let done = call(&server, "DONE", "k", json!({})).await;
            store.close().await;
            done
        };
        assert_eq!(screen_run(&before), ("SUCCESS".into(), 1.0));
        // A new process on the same file.
        let store = store::connect(&url, StoreOptions::default()).await.unwrap();
        let server = server(&gate, store);
        // The completion's resend: the first answer, from the database, without a run.
        assert_eq!(
            ok(&call(&server, "DONE", "k", json!({})).await),
            ok(&before)
        );
        assert_eq!(gate.runs(), 1);
        // Any other call of the completed token is refused.
        assert!(refused(&call(&server, "DONE", "k2", json!({})).await));
        assert!(refused(&call(&server, "WAIT", "k3", json!({})).await));
        assert_eq!(gate.runs(), 1);
        // The session a step kept survived the restart too (checked on a fresh token).
        let other = Gate::new();
        let store = store::connect(&url, StoreOptions::default()).await.unwrap();
        let server = FlowServer::new(Flows::new().register("gate", other), store.clone());
        let remembered = call_on(&server, "t2", "REMEMBER", "s1", json!({"x": "kept"})).await;
        assert!(remembered.is_ok(), "{remembered:?}");
        store.close().await;
        let store = store::connect(&url, StoreOptions::default()).await.unwrap();
        let server = FlowServer::new(Flows::new().register("gate", Gate::new()), store);
        let recalled = call_on(&server, "t2", "RECALL", "s2", json!({}))
            .await
            .unwrap();
        let Some(flow_response::Outcome::NextScreen(next)) = recalled.outcome else {
            panic!("{recalled:?}");
        };
        let data = struct_to_json(next.data.clone().unwrap(), "data").unwrap();
        assert_eq!(data["x"], "kept");
    }

    #[test]
    fn finished_calls_are_bounded() {
        let calls = Arc::new(Calls::new(2, Duration::from_secs(3600)));
        let id = |n: u8| CallId {
            token: TokenKey::new(&format!("token-{n}")),
            key: "k".into(),
        };
        for n in 0..5 {
            let Joined::Lead(lead) = calls.join(id(n)) else {
                panic!("a new call leads");
            };
            let answer = lead.finish(
                Err(Status::internal("x")),
                Some(Outcome::screen("S", json!({"n": n}))),
            );
            assert_eq!(answer.unwrap_err().message(), "x");
        }
        assert_eq!(calls.len(), 2);
        assert!(matches!(calls.join(id(4)), Joined::Recent(_)));
        assert!(matches!(calls.join(id(0)), Joined::Lead(_)));
        // A lead dropped without an answer leaves nothing behind.
        assert_eq!(calls.len(), 2);
        let Joined::Lead(lead) = calls.join(id(9)) else {
            panic!("a new call leads");
        };
        let Joined::Wait(waiter) = calls.join(id(9)) else {
            panic!("the same call waits");
        };
        drop(lead);
        assert_eq!(calls.len(), 2);
        assert!(waiter.has_changed().is_err());
    }

    /// `settled` is ready once no lead is left, whether it finished or was dropped
    /// (a panic), and not before; a waiter is no lead.
    #[tokio::test]
    async fn calls_settle_when_the_last_lead_goes() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};

        let calls = Arc::new(Calls::default());
        let id = |n: u8| CallId {
            token: TokenKey::new(&format!("token-{n}")),
            key: "k".into(),
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut idle = std::pin::pin!(calls.settled());
        assert_eq!(idle.as_mut().poll(&mut cx), Poll::Ready(()));
        let (Joined::Lead(first), Joined::Lead(second)) = (calls.join(id(1)), calls.join(id(2)))
        else {
            panic!("new calls lead");
        };
        let Joined::Wait(_waiter) = calls.join(id(1)) else {
            panic!("the same call waits");
        };
        assert_eq!(calls.running(), 2);
        let settled = calls.settled();
        let mut settled = std::pin::pin!(settled);
        assert!(settled.as_mut().poll(&mut cx).is_pending());
        let _ = first.finish(Err(Status::internal("x")), None);
        assert!(settled.as_mut().poll(&mut cx).is_pending());
        drop(second);
        assert_eq!(calls.running(), 0);
        assert_eq!(settled.as_mut().poll(&mut cx), Poll::Ready(()));
    }
}
