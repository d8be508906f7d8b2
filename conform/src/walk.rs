//! The walk: from `INIT` through every screen, filling each form and pressing each
//! button as a user would, over any [`Transport`] (an HTTPS endpoint or a gRPC flow
//! service). Every answer is checked with the SDK's [`FlowJson::check`]; then every
//! screen must have been reached, and the answers' p90 latency must stay under
//! WhatsApp's first alert threshold.

use std::collections::BTreeSet;
use std::time::Duration;

use flowgate_sdk::{Action, FlowJson, Outcome};
use serde_json::{Map, Value};

use crate::fill::{self, Scope};
use crate::layout::{ActionSpec, Layout};
use crate::report::Report;
use crate::scenario::{Plan, Scenario};

/// Meta alerts when the endpoint's p90 latency passes 1 s (then 5 s, then 7 s).
pub const P90_LIMIT: Duration = Duration::from_secs(1);

/// A walk that has not finished after this many requests is going round in circles.
const MAX_STEPS: usize = 40;

/// The data API version requests carry.
pub const VERSION: &str = "3.0";

/// One request of the walk, as WhatsApp would send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub action: Action,
    pub flow_token: String,
    /// Empty for `INIT`.
    pub screen: String,
    pub data: Map<String, Value>,
}

/// An answer, as the SDK's [`Outcome`], and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub outcome: Outcome,
    pub latency: Duration,
}

/// Carries a [`Call`] to the implementation under test and reads its answer. An
/// `Err` is a reason the answer is not one WhatsApp would accept (status, content
/// type, body shape, encryption), naming what was wrong.
#[allow(async_fn_in_trait)]
pub trait Transport {
    async fn call(&mut self, call: &Call) -> Result<Reply, String>;
}

/// How the walk arrived on a screen: `BACK` is only sent from a screen reached by
/// moving forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    Init,
    Forward,
    Back,
}

/// Walks `flow` once per plan of `scenario`, then checks coverage and latency.
pub async fn run<T: Transport>(
    flow: &FlowJson,
    layout: &Layout,
    scenario: &Scenario,
    transport: &mut T,
    report: &mut Report,
) {
    let mut walker = Walker {
        flow,
        layout,
        transport,
        report,
        latencies: Vec::new(),
        reached: BTreeSet::new(),
        backed: BTreeSet::new(),
        probed: BTreeSet::new(),
    };
    for plan in scenario.plans() {
        walker.walk(&plan).await;
    }
    walker.coverage();
    walker.latency();
}

struct Walker<'a, T> {
    flow: &'a FlowJson,
    layout: &'a Layout,
    transport: &'a mut T,
    report: &'a mut Report,
    /// Each answer's check name and latency.
    latencies: Vec<(String, Duration)>,
    reached: BTreeSet<String>,
    /// Screens already sent a `BACK` from (once per run is enough).
    backed: BTreeSet<String>,
    /// Screens already sent a deliberately invalid input.
    probed: BTreeSet<String>,
}

impl<T: Transport> Walker<'_, T> {
    async fn walk(&mut self, plan: &Plan) {
        // A fresh token per walk: the service may hold each to single use.
        let token = format!("conform-{}", uuid::Uuid::new_v4());
        let mut scope = Scope::default();
        let name = format!("{}: INIT", plan.name);
        let Some(mut outcome) = self
            .exchange(&name, Action::Init, &token, "", Map::new())
            .await
        else {
            return;
        };
        let mut arrival = Arrival::Init;
        for _ in 0..MAX_STEPS {
            let (screen, data) = match outcome {
                Outcome::Screen { screen, data, .. } => {
                    (screen, data.as_object().cloned().unwrap_or_default())
                }
                Outcome::Complete { .. } => {
                    self.report.pass(format!("{}: completed", plan.name));
                    return;
                }
                // `exchange` has reported it.
                Outcome::TokenInvalid { .. } => return,
            };
            self.reached.insert(screen.clone());
            let next = self
                .screen(plan, &token, &screen, data, arrival, &mut scope)
                .await;
            match next {
                Some((next, how)) => {
                    outcome = next;
                    arrival = how;
                }
                None => return,
            }
        }
        self.report.fail(
            format!("{}: finishes", plan.name),
            format!("the walk did not complete within {MAX_STEPS} requests"),
        );
    }

    /// Acts on one screen; returns the next answer and how it was reached, or
    /// `None` when the walk ends here (reported).
    async fn screen(
        &mut self,
        plan: &Plan,
        token: &str,
        screen: &str,
        data: Map<String, Value>,
        arrival: Arrival,
        scope: &mut Scope,
    ) -> Option<(Outcome, Arrival)> {
        let p = &plan.name;
        let refresh = self.flow.screen(screen).is_some_and(|s| s.refresh_on_back);
        if refresh && arrival == Arrival::Forward && self.backed.insert(screen.to_owned()) {
            let name = format!("{p}: BACK from {screen}");
            let outcome = self
                .exchange(&name, Action::Back, token, screen, Map::new())
                .await?;
            return Some((outcome, Arrival::Back));
        }
        let layout = self.layout.screen(screen).cloned().unwrap_or_default();
        let inputs = plan.inputs.get(screen).cloned().unwrap_or_default();
        scope.form = Map::new();
        scope.data = data;
        for component in &layout.components {
            let Some(field) = component.name.clone().filter(|_| component.is_input()) else {
                continue;
            };
            let value = inputs
                .get(&field)
                .or_else(|| layout.init_values.get(&field))
                .cloned()
                .or_else(|| fill::derive(component, scope));
            let Some(value) = value else { continue };
            scope.form.insert(field.clone(), value);
            let Some(action) = component
                .on_select
                .as_ref()
                .filter(|a| a.name == "data_exchange")
            else {
                continue;
            };
            let name = format!("{p}: data_exchange on {screen} (select `{field}`)");
            let payload = scope.resolve_map(&action.payload);
            match self
                .exchange(&name, Action::DataExchange, token, screen, payload)
                .await?
            {
                Outcome::Screen {
                    screen: same,
                    data,
                    error_message: None,
                } if same == screen => {
                    scope.data = data.as_object().cloned().unwrap_or_default();
                }
                Outcome::Screen {
                    screen: same,
                    error_message: Some(message),
                    ..
                } if same == screen => {
                    self.refused(p, screen, &field, &message);
                    return None;
                }
                other => return Some((other, Arrival::Forward)),
            }
        }
        scope
            .screens
            .insert(screen.to_owned(), (scope.form.clone(), scope.data.clone()));
        let Some(action) = layout.primary().cloned() else {
            if !self.flow.screen(screen).is_some_and(|s| s.terminal) {
                self.report.fail(
                    format!("{p}: leaves {screen}"),
                    format!("screen `{screen}` has no on-click-action to leave it by"),
                );
            }
            return None;
        };
        match action.name.as_str() {
            "data_exchange" => self.submit(plan, token, screen, &action, scope).await,
            "navigate" => {
                let next = action.next.clone().unwrap_or_default();
                let name = format!("{p}: navigate {screen} → {next} (on the phone)");
                if self.flow.screen(&next).is_none() {
                    self.report.fail(
                        name,
                        format!("screen `{screen}`: navigate names `{next}`, not a screen"),
                    );
                    return None;
                }
                self.report.pass(name);
                let data = Value::Object(scope.resolve_map(&action.payload));
                Some((Outcome::screen(next, data), Arrival::Forward))
            }
            "complete" => {
                self.report
                    .pass(format!("{p}: complete on {screen} (on the phone)"));
                None
            }
            other => {
                self.report.fail(
                    format!("{p}: leaves {screen}"),
                    format!("screen `{screen}`: the walk cannot take an on-click-action `{other}`"),
                );
                None
            }
        }
    }

    /// Presses the screen's data_exchange button: first once with a deliberately
    /// invalid input (first walk, once per screen), then with the form as filled.
    async fn submit(
        &mut self,
        plan: &Plan,
        token: &str,
        screen: &str,
        action: &ActionSpec,
        scope: &Scope,
    ) -> Option<(Outcome, Arrival)> {
        let p = &plan.name;
        let payload = scope.resolve_map(&action.payload);
        if self.probed.insert(screen.to_owned()) {
            self.probe(p, token, screen, action, &payload).await;
        }
        let name = format!("{p}: data_exchange on {screen}");
        let outcome = self
            .exchange(&name, Action::DataExchange, token, screen, payload)
            .await?;
        match &outcome {
            Outcome::Screen {
                screen: same,
                error_message: Some(message),
                ..
            } if same == screen => {
                self.refused(p, screen, "the form", message);
                None
            }
            _ => Some((outcome, Arrival::Forward)),
        }
    }

    /// Sends the payload with one input made invalid and expects the same screen
    /// with `error_message`.
    async fn probe(
        &mut self,
        p: &str,
        token: &str,
        screen: &str,
        action: &ActionSpec,
        payload: &Map<String, Value>,
    ) {
        let layout = self.layout.screen(screen).cloned().unwrap_or_default();
        for component in layout.components.iter().filter(|c| c.is_input()) {
            let (Some(field), Some((bad, what))) = (&component.name, fill::invalid(component))
            else {
                continue;
            };
            let binding = Value::String(format!("${{form.{field}}}"));
            let Some(key) = action
                .payload
                .iter()
                .find(|(_, v)| **v == binding)
                .map(|(k, _)| k.clone())
            else {
                continue;
            };
            let mut wrong = payload.clone();
            wrong.insert(key, bad);
            let name = format!("{p}: data_exchange on {screen} with {what} in `{field}`");
            let Some(outcome) = self
                .exchange(&name, Action::DataExchange, token, screen, wrong)
                .await
            else {
                return;
            };
            let result = match outcome {
                Outcome::Screen {
                    screen: same,
                    error_message: Some(_),
                    ..
                } if same == screen => Ok(()),
                Outcome::Screen { screen: to, .. } => Err(format!(
                    "screen `{screen}`, field `{field}`: {what} was answered with screen `{to}` and no error_message"
                )),
                Outcome::Complete { .. } => Err(format!(
                    "screen `{screen}`, field `{field}`: {what} completed the flow"
                )),
                Outcome::TokenInvalid { .. } => return,
            };
            self.report.record(
                format!("{p}: {screen} answers {what} in `{field}` with error_message"),
                result,
            );
            return;
        }
    }

    fn refused(&mut self, p: &str, screen: &str, what: &str, message: &str) {
        self.report.fail(
            format!("{p}: {screen} accepts the walk's values"),
            format!(
                "screen `{screen}`: {what} was answered with error_message {message:?}; \
                 give real values in a scenario ([inputs.{screen}])"
            ),
        );
    }

    /// One request and the checks of its answer; `None` when the walk cannot go on.
    async fn exchange(
        &mut self,
        name: &str,
        action: Action,
        token: &str,
        screen: &str,
        data: Map<String, Value>,
    ) -> Option<Outcome> {
        let call = Call {
            action,
            flow_token: token.to_owned(),
            screen: screen.to_owned(),
            data,
        };
        let reply = match self.transport.call(&call).await {
            Ok(reply) => reply,
            Err(reason) => {
                self.report.fail(name, reason);
                return None;
            }
        };
        self.latencies.push((name.to_owned(), reply.latency));
        if let Outcome::TokenInvalid { message } = &reply.outcome {
            self.report.fail(
                name,
                format!("a fresh flow token was answered as no longer valid (427): {message:?}"),
            );
            return None;
        }
        match self.flow.check(action, screen, &reply.outcome) {
            Ok(()) => {
                let to = match &reply.outcome {
                    Outcome::Screen { screen, .. } => screen.as_str(),
                    _ => flowgate_sdk::contract::SUCCESS,
                };
                self.report.pass(format!("{name} → {to}"));
                Some(reply.outcome)
            }
            Err(violation) => {
                self.report.fail(
                    name,
                    format!("{violation} (WhatsApp: {})", violation.error_key()),
                );
                None
            }
        }
    }

    /// Every screen must have been reached by some walk.
    fn coverage(&mut self) {
        for screen in self.flow.screens() {
            let name = format!("screen {} reached", screen.id);
            if self.reached.contains(&screen.id) {
                self.report.pass(name);
                continue;
            }
            let from: Vec<String> = self
                .flow
                .screens()
                .iter()
                .filter(|s| self.flow.routes_from(&s.id).contains(&screen.id))
                .map(|s| format!("`{}`", s.id))
                .collect();
            let from = if from.is_empty() {
                "no screen leads there".to_owned()
            } else {
                format!("the routing model leads there from {}", from.join(", "))
            };
            self.report.fail(
                name,
                format!(
                    "screen `{}` was never reached ({from}); add a [[walks]] entry to a \
                     scenario whose inputs take that branch",
                    screen.id
                ),
            );
        }
    }

    /// The p90 of every answer's latency against WhatsApp's 1 s alert.
    fn latency(&mut self) {
        if self.latencies.is_empty() {
            return;
        }
        let mut sorted: Vec<Duration> = self.latencies.iter().map(|(_, d)| *d).collect();
        sorted.sort();
        let p90 = sorted[(sorted.len() * 9).div_ceil(10) - 1];
        let name = "latency p90 within 1 s";
        if p90 <= P90_LIMIT {
            self.report.pass(name);
            return;
        }
        let (slowest, worst) = self
            .latencies
            .iter()
            .max_by_key(|(_, d)| *d)
            .cloned()
            .unwrap_or_default();
        self.report.fail(
            name,
            format!(
                "p90 {} ms over {} answers is past WhatsApp's 1 s alert threshold (slowest: {slowest}, {} ms)",
                p90.as_millis(),
                sorted.len(),
                worst.as_millis()
            ),
        );
    }
}
