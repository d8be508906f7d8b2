//! The gRPC transport: the walk straight against a `flowgate.v1.FlowService`, and the
//! checks only the contract has: `grpc.health.v1`, `NOT_FOUND` for an unknown flow,
//! and a repeated idempotency key answered with the first outcome.

use std::time::{Duration, Instant};

use flowgate_proto::json::{struct_from_json, struct_to_json};
use flowgate_proto::v1::flow_response::Outcome as Wire;
use flowgate_proto::v1::flow_service_client::FlowServiceClient;
use flowgate_proto::v1::{
    BackRequest, DataExchangeRequest, FlowResponse, FlowTokenSignature, InitRequest,
    NotifyErrorRequest, RequestContext,
};
use flowgate_sdk::{Action, Outcome};
use serde_json::Value;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::report::Report;
use crate::walk::{Call, Reply, Transport, VERSION};

/// The deadline of each call: the gateway's budget for a request.
const DEADLINE: Duration = Duration::from_secs(10);

/// How to reach a flow service.
#[derive(Default)]
pub struct GrpcOptions {
    /// `http://HOST:PORT`, or `https://…` with `ca_pem`.
    pub url: String,
    /// The flow under test, as the gateway would name it in `RequestContext.flow`.
    pub flow: String,
    /// Sent as `authorization: Bearer …` metadata.
    pub bearer: Option<String>,
    /// PEM certificates to trust for TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for GrpcOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcOptions")
            .field("url", &self.url)
            .field("flow", &self.flow)
            .field("bearer", &self.bearer.is_some())
            .field("tls", &self.ca_pem.is_some())
            .field("mtls", &self.identity.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("{0}: an https:// flow service needs --ca")]
    NeedsCa(String),
    #[error("{0}: not a URL: {1}")]
    Url(String, String),
    #[error("the bearer token is not valid metadata")]
    Bearer,
    #[error("cannot reach {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
}

/// A call that can be sent again with the same idempotency key.
#[derive(Debug, Clone)]
enum Repeatable {
    Init(InitRequest),
    Exchange(DataExchangeRequest),
}

/// A flow service under test.
pub struct Grpc {
    flows: FlowServiceClient<Channel>,
    health: HealthClient<Channel>,
    flow: String,
    bearer: Option<MetadataValue<Ascii>>,
    /// The first INIT of the run, and its answer.
    first_init: Option<(Repeatable, FlowResponse)>,
    /// The last call that completed a flow, and its answer: repeating it shows
    /// whether the handler runs twice (single use would refuse a rerun).
    last_completion: Option<(Repeatable, FlowResponse)>,
}

impl std::fmt::Debug for Grpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc")
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

impl Grpc {
    pub async fn connect(options: GrpcOptions) -> Result<Self, GrpcError> {
        let connect = |source| GrpcError::Connect {
            url: options.url.clone(),
            source,
        };
        let mut endpoint = Channel::from_shared(options.url.clone())
            .map_err(|e| GrpcError::Url(options.url.clone(), e.to_string()))?
            .connect_timeout(Duration::from_secs(5));
        if options.ca_pem.is_some() || options.identity.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &options.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &options.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(connect)?;
        } else if options.url.starts_with("https:") {
            return Err(GrpcError::NeedsCa(options.url));
        }
        let channel = endpoint.connect().await.map_err(connect)?;
        let bearer = options
            .bearer
            .map(|t| format!("Bearer {t}").parse().map_err(|_| GrpcError::Bearer))
            .transpose()?;
        Ok(Self {
            flows: FlowServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            flow: options.flow,
            bearer,
            first_init: None,
            last_completion: None,
        })
    }

    fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        // A per-call deadline travels as `grpc-timeout`; `Endpoint::timeout` would not.
        request.set_timeout(DEADLINE);
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        request
    }

    fn context(&self, flow: &str) -> RequestContext {
        RequestContext {
            flow: flow.to_owned(),
            request_id: uuid::Uuid::new_v4().to_string(),
            attempt: 1,
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            version: VERSION.to_owned(),
            signature_verified: false,
            flow_token_signature: FlowTokenSignature::Unchecked.into(),
        }
    }

    /// Health, an unknown flow, and an error notification.
    pub async fn preflight(&mut self, report: &mut Report) {
        let health = self
            .health
            .check(self.request(HealthCheckRequest {
                service: String::new(),
            }))
            .await;
        report.record(
            "grpc.health.v1 Check answers SERVING",
            match health {
                Ok(answer) if answer.get_ref().status() == ServingStatus::Serving => Ok(()),
                Ok(answer) => Err(format!("status {:?}", answer.get_ref().status())),
                Err(status) => Err(describe(&status)),
            },
        );
        let unknown = format!("conform-no-such-flow-{}", uuid::Uuid::new_v4().simple());
        let init = InitRequest {
            context: Some(self.context(&unknown)),
            flow_token: format!("conform-{}", uuid::Uuid::new_v4()),
            screen: String::new(),
            data: None,
        };
        let answer = self.flows.init(self.request(init)).await;
        report.record(
            "an unknown flow answers NOT_FOUND",
            match answer {
                Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
                Err(status) => Err(describe(&status)),
                Ok(_) => Err(format!("flow `{unknown}` was answered with an outcome")),
            },
        );
        let notice = NotifyErrorRequest {
            context: Some(self.context(&self.flow)),
            flow_token: format!("conform-{}", uuid::Uuid::new_v4()),
            screen: String::new(),
            action: "data_exchange".into(),
            error_key: "conform-check".into(),
            error_message: "A deliberate error notification from flowgate-conform.".into(),
            data: None,
        };
        let answer = self.flows.notify_error(self.request(notice)).await;
        report.record(
            "NotifyError is acknowledged",
            answer.map(drop).map_err(|s| describe(&s)),
        );
    }

    /// Sends the run's last completing call (else its first INIT) again with the same
    /// idempotency key and its data changed (see `varied`): the answer must be the first one,
    /// unchanged. Resending the same data could not tell a handler that ran again from
    /// the first run, when the flow answers the same data the same way. A service may
    /// also refuse a key reused with other data (`FAILED_PRECONDITION` or
    /// `ALREADY_EXISTS`, as HTTP APIs answer 422). Then the same changed data is sent
    /// under a new key, which must not be refused the same way (else the refusal was of
    /// the data, not of the reused key), and the call is sent again as it was, which
    /// must get the first answer. (`INVALID_ARGUMENT` is what a flow answers a request
    /// it refuses as sent: it cannot tell a reused key apart.)
    pub async fn idempotency(&mut self, report: &mut Report) {
        let name = "a repeated idempotency key gets the first outcome";
        let Some((call, first)) = self.last_completion.clone().or(self.first_init.clone()) else {
            report.fail(
                name,
                "no call of the walk was answered, so none could be repeated",
            );
            return;
        };
        let what = match call {
            Repeatable::Init(_) => "INIT",
            Repeatable::Exchange(_) => "the completing data_exchange",
        };
        let result = match self.repeat(call.clone(), Resend::Varied).await {
            Ok(answer) if answer == first => Ok(()),
            Ok(answer) => Err(format!(
                "{what} repeated with its idempotency key (and other data) answered {}, \
                 the first time {} (the handler ran again)",
                summary(&answer),
                summary(&first)
            )),
            Err(refusal)
                if matches!(
                    refusal.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists
                ) =>
            {
                // The key reused with other data was refused. Was it the key, or the data?
                let control = self.repeat(call.clone(), Resend::VariedUnderANewKey).await;
                match control {
                    Err(status) if status.code() == refusal.code() => Err(format!(
                        "{what} repeated with other data was refused ({}), and so was the \
                         same data under a new key: a refusal of the data, not of the \
                         reused key",
                        describe(&refusal)
                    )),
                    // The same call, as it was, must get the first answer.
                    _ => match self.repeat(call, Resend::AsItWas).await {
                        Ok(answer) if answer == first => Ok(()),
                        Ok(answer) => Err(format!(
                            "{what} repeated as it was answered {}, the first time {} \
                             (the handler ran again)",
                            summary(&answer),
                            summary(&first)
                        )),
                        Err(status) => Err(format!("{what} repeated: {}", describe(&status))),
                    },
                }
            }
            Err(status) => Err(format!(
                "{what} repeated with other data: {}",
                describe(&status)
            )),
        };
        report.record(name, result);
    }

    /// Sends `call` again, as `how` says.
    async fn repeat(
        &mut self,
        call: Repeatable,
        how: Resend,
    ) -> Result<FlowResponse, tonic::Status> {
        let data = |data: Option<prost_types::Struct>| match how {
            Resend::AsItWas => data,
            Resend::Varied | Resend::VariedUnderANewKey => Some(varied(data)),
        };
        let context = match how {
            Resend::VariedUnderANewKey => Some(self.context(&self.flow)),
            Resend::AsItWas | Resend::Varied => None,
        };
        let answer = match call {
            Repeatable::Init(mut message) => {
                message.data = data(message.data.take());
                message.context = context.or(message.context);
                self.flows.init(self.request(message)).await
            }
            Repeatable::Exchange(mut message) => {
                message.data = data(message.data.take());
                message.context = context.or(message.context);
                self.flows.data_exchange(self.request(message)).await
            }
        };
        answer.map(tonic::Response::into_inner)
    }
}

/// How [`Grpc::idempotency`] sends a call again.
#[derive(Debug, Clone, Copy)]
enum Resend {
    /// With its idempotency key and its data.
    AsItWas,
    /// With its idempotency key and its data [`varied`].
    Varied,
    /// With a new idempotency key and its data [`varied`].
    VariedUnderANewKey,
}

/// `data` changed so that a handler running on it again would answer otherwise: every
/// string gets a prefix (`again.`; an email stays an email, and a name, a date or a
/// choice becomes another, or invalid), and a field is added (`flowgate_conform`), for
/// data with no string. A service that answers the repeated key with its first outcome
/// does not read it. (Data a flow answers whatever it holds, like an empty `INIT`,
/// still cannot show a rerun.)
fn varied(data: Option<prost_types::Struct>) -> prost_types::Struct {
    use prost_types::value::Kind;
    let mut data = data.unwrap_or_default();
    for value in data.fields.values_mut() {
        if let Some(Kind::StringValue(text)) = &mut value.kind {
            text.insert_str(0, "again.");
        }
    }
    data.fields.insert(
        "flowgate_conform".into(),
        prost_types::Value {
            kind: Some(Kind::StringValue("repeated key".into())),
        },
    );
    data
}

impl Transport for Grpc {
    async fn call(&mut self, call: &Call) -> Result<Reply, String> {
        let data = struct_from_json(&call.data, "data").map_err(|e| e.to_string())?;
        let context = Some(self.context(&self.flow));
        let (token, screen) = (call.flow_token.clone(), call.screen.clone());
        let started = Instant::now();
        let (repeatable, answer) = match call.action {
            Action::Init => {
                let message = InitRequest {
                    context,
                    flow_token: token,
                    screen,
                    data: Some(data),
                };
                let answer = self.flows.init(self.request(message.clone())).await;
                (Some(Repeatable::Init(message)), answer)
            }
            Action::DataExchange => {
                let message = DataExchangeRequest {
                    context,
                    flow_token: token,
                    screen,
                    data: Some(data),
                };
                let answer = self
                    .flows
                    .data_exchange(self.request(message.clone()))
                    .await;
                (Some(Repeatable::Exchange(message)), answer)
            }
            Action::Back => {
                let message = BackRequest {
                    context,
                    flow_token: token,
                    screen,
                    data: Some(data),
                };
                (None, self.flows.back(self.request(message)).await)
            }
        };
        let latency = started.elapsed();
        let response = answer.map_err(|s| describe(&s))?.into_inner();
        let outcome = outcome(&response)?;
        if let Some(repeatable) = repeatable {
            match (&repeatable, &outcome) {
                (Repeatable::Exchange(_), Outcome::Complete { .. }) => {
                    self.last_completion = Some((repeatable, response));
                }
                (Repeatable::Init(_), _) if self.first_init.is_none() => {
                    self.first_init = Some((repeatable, response));
                }
                _ => {}
            }
        }
        Ok(Reply { outcome, latency })
    }
}

/// A `FlowResponse` as the SDK's [`Outcome`].
pub fn outcome(response: &FlowResponse) -> Result<Outcome, String> {
    let object = |s: &Option<prost_types::Struct>, root| {
        struct_to_json(s.clone().unwrap_or_default(), root)
            .map(Value::Object)
            .map_err(|e| e.to_string())
    };
    Ok(match &response.outcome {
        None => return Err("a FlowResponse without an outcome".into()),
        Some(Wire::NextScreen(next)) => Outcome::Screen {
            screen: next.screen.clone(),
            data: object(&next.data, "data")?,
            error_message: next.error_message.clone(),
        },
        Some(Wire::Complete(complete)) => Outcome::Complete {
            params: object(&complete.params, "params")?,
        },
        Some(Wire::TokenInvalid(invalid)) => Outcome::TokenInvalid {
            message: invalid.message.clone(),
        },
    })
}

fn summary(response: &FlowResponse) -> String {
    match outcome(response) {
        Ok(Outcome::Screen { screen, .. }) => format!("screen `{screen}`"),
        Ok(Outcome::Complete { params }) => format!("completion with {params}"),
        Ok(Outcome::TokenInvalid { message }) => format!("token no longer valid ({message:?})"),
        Err(reason) => reason,
    }
}

fn describe(status: &tonic::Status) -> String {
    format!("gRPC {:?}: {}", status.code(), status.message())
}
