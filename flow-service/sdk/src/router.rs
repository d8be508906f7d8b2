//! [`Router`]: a flow written as handlers by action and screen, next to its Flow JSON.
//!
//! ```
//! use flowgate_sdk::{Flow, FlowError, FlowJson, Outcome, Request, Router};
//! use serde_json::json;
//!
//! let flow_json = FlowJson::parse(r#"{
//!     "version": "7.3", "data_api_version": "3.0",
//!     "routing_model": {"HELLO": []},
//!     "screens": [{"id": "HELLO", "terminal": true,
//!         "data": {"greeting": {"type": "string", "__example__": "Hi!"}},
//!         "layout": {"type": "SingleColumnLayout", "children": [
//!             {"type": "TextBody", "text": "${data.greeting}"}]}}]
//! }"#).unwrap();
//!
//! async fn said_hi(_request: Request) -> Result<Outcome, FlowError> {
//!     Ok(Outcome::complete(json!({"said": "hi"})))
//! }
//!
//! let hello = Router::new(flow_json)
//!     .on_init(|_request| async { Ok(Outcome::screen("HELLO", json!({"greeting": "Hi!"}))) })
//!     .on_exchange("HELLO", said_hi);
//! assert!(hello.flow_json().is_some());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::contract::FlowJson;
use crate::flow::{Flow, FlowError, Outcome, Request};

type Answer = Pin<Box<dyn Future<Output = Result<Outcome, FlowError>> + Send>>;
type Handler = Arc<dyn Fn(Request) -> Answer + Send + Sync>;

fn boxed<H, F>(handler: H) -> Handler
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Outcome, FlowError>> + Send + 'static,
{
    Arc::new(move |request| Box::pin(handler(request)))
}

/// A flow built from handlers, one per action and screen. It implements [`Flow`], so it
/// registers like any other, and carries its Flow JSON, so every answer is checked.
///
/// - `INIT` goes to the [`on_init`](Router::on_init) handler.
/// - `data_exchange` goes to the [`on_exchange`](Router::on_exchange) handler of the
///   request's screen; a screen without one is [`FlowError::UnknownScreen`] (HTTP 400).
/// - `BACK` goes to the [`on_back`](Router::on_back) handler of the request's screen;
///   without one it is answered like `INIT`, as [`Flow::back`] does.
///
/// A handler is an async function or closure taking a [`Request`] and returning
/// `Result<Outcome, FlowError>`. To share state, capture it (e.g. an `Arc`) in a closure.
pub struct Router {
    flow_json: FlowJson,
    init: Option<Handler>,
    exchange: HashMap<String, Handler>,
    back: HashMap<String, Handler>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exchange: Vec<_> = self.exchange.keys().collect();
        exchange.sort();
        let mut back: Vec<_> = self.back.keys().collect();
        back.sort();
        f.debug_struct("Router")
            .field("init", &self.init.is_some())
            .field("exchange", &exchange)
            .field("back", &back)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A flow with no handlers yet, checked against `flow_json`.
    pub fn new(flow_json: FlowJson) -> Self {
        Self {
            flow_json,
            init: None,
            exchange: HashMap::new(),
            back: HashMap::new(),
        }
    }

    /// Handles `INIT`: the user opened the flow.
    pub fn on_init<H, F>(mut self, handler: H) -> Self
    where
        H: Fn(Request) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Outcome, FlowError>> + Send + 'static,
    {
        self.init = Some(boxed(handler));
        self
    }

    /// Handles `data_exchange` from `screen`: the user submitted it, or one of its
    /// components asked for data.
    ///
    /// # Panics
    ///
    /// When the Flow JSON has no screen `screen`: a typo found when the flow is built,
    /// not when a user reaches it.
    pub fn on_exchange<H, F>(mut self, screen: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Outcome, FlowError>> + Send + 'static,
    {
        self.declared(screen, "on_exchange");
        self.exchange.insert(screen.to_owned(), boxed(handler));
        self
    }

    /// Handles `BACK` from `screen`, sent when the user goes back from a screen with
    /// `refresh_on_back`.
    ///
    /// # Panics
    ///
    /// When the Flow JSON has no screen `screen`.
    pub fn on_back<H, F>(mut self, screen: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Outcome, FlowError>> + Send + 'static,
    {
        self.declared(screen, "on_back");
        self.back.insert(screen.to_owned(), boxed(handler));
        self
    }

    fn declared(&self, screen: &str, method: &str) {
        assert!(
            self.flow_json.screen(screen).is_some(),
            "Router::{method}({screen:?}): the Flow JSON declares no screen `{screen}`"
        );
    }
}

#[async_trait::async_trait]
impl Flow for Router {
    async fn init(&self, request: Request) -> Result<Outcome, FlowError> {
        match &self.init {
            Some(handler) => handler(request).await,
            None => Err(FlowError::Invalid("this flow does not handle INIT".into())),
        }
    }

    async fn data_exchange(&self, request: Request) -> Result<Outcome, FlowError> {
        match self.exchange.get(&request.screen) {
            Some(handler) => handler(request).await,
            None => Err(FlowError::UnknownScreen(request.screen)),
        }
    }

    async fn back(&self, request: Request) -> Result<Outcome, FlowError> {
        match self.back.get(&request.screen) {
            Some(handler) => handler(request).await,
            None => self.init(request).await,
        }
    }

    fn flow_json(&self) -> Option<&FlowJson> {
        Some(&self.flow_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flow_json() -> FlowJson {
        FlowJson::parse(
            &json!({
                "version": "7.3", "data_api_version": "3.0",
                "routing_model": {"A": ["B"], "B": []},
                "screens": [
                    {"id": "A", "layout": {"type": "SingleColumnLayout", "children": []}},
                    {"id": "B", "terminal": true,
                     "layout": {"type": "SingleColumnLayout", "children": []}}
                ]
            })
            .to_string(),
        )
        .unwrap()
    }

    fn request(screen: &str) -> Request {
        Request {
            flow_token: "t".into(),
            screen: screen.into(),
            ..Request::default()
        }
    }

    async fn to_b(_: Request) -> Result<Outcome, FlowError> {
        Ok(Outcome::screen("B", json!({})))
    }

    #[tokio::test]
    async fn routes_by_action_and_screen() {
        let router = Router::new(flow_json())
            .on_init(|_| async { Ok(Outcome::screen("A", json!({}))) })
            .on_exchange("A", to_b)
            .on_exchange("B", |r: Request| async move {
                Ok(Outcome::complete(json!({"from": r.screen})))
            })
            .on_back("B", |_| async {
                Ok(Outcome::screen("A", json!({"back": true})))
            });
        let screen = |o: Outcome| match o {
            Outcome::Screen { screen, data, .. } => (screen, data),
            other => panic!("{other:?}"),
        };
        assert_eq!(screen(router.init(request("")).await.unwrap()).0, "A");
        assert_eq!(
            screen(router.data_exchange(request("A")).await.unwrap()).0,
            "B"
        );
        assert_eq!(
            router.data_exchange(request("B")).await.unwrap(),
            Outcome::complete(json!({"from": "B"}))
        );
        assert_eq!(
            screen(router.back(request("B")).await.unwrap()),
            ("A".into(), json!({"back": true}))
        );
        // BACK without a handler for the screen starts over.
        assert_eq!(
            screen(router.back(request("A")).await.unwrap()),
            ("A".into(), json!({}))
        );
        let err = router.data_exchange(request("C")).await.unwrap_err();
        assert!(matches!(err, FlowError::UnknownScreen(s) if s == "C"));
        assert!(router.flow_json().is_some());
    }

    #[tokio::test]
    async fn no_init_handler_is_refused() {
        let err = Router::new(flow_json())
            .init(request(""))
            .await
            .unwrap_err();
        assert!(matches!(err, FlowError::Invalid(_)), "{err}");
    }

    #[test]
    #[should_panic(expected = "the Flow JSON declares no screen `NOPE`")]
    fn handlers_for_undeclared_screens_are_caught_when_built() {
        let _ = Router::new(flow_json()).on_exchange("NOPE", to_b);
    }
}
