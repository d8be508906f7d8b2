//! The endpoint transport: requests as WhatsApp sends them over HTTPS, plain JSON or
//! sealed with Meta's encryption and signed, and the checks only an endpoint has:
//! `ping`, error notifications, 421 for an undecryptable body and 432 for a bad
//! signature.

use std::time::{Duration, Instant};

use flowgate_sdk::{Action, Outcome};
use serde_json::{Map, Value, json};

use crate::report::Report;
use crate::seal::{self, Sealer};
use crate::walk::{Call, Reply, Transport, VERSION};

/// WhatsApp gives up on an endpoint after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How to reach and wrap requests for an endpoint.
#[derive(Default)]
pub struct EndpointOptions {
    pub url: String,
    /// PEM certificates to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any certificate (a development endpoint with a self-signed one).
    pub insecure: bool,
    /// The endpoint's public key (PEM): requests are sealed with Meta's encryption.
    pub public_key_pem: Option<String>,
    /// Signs requests (`X-Hub-Signature-256`) when given, with a public key only.
    pub app_secret: Option<String>,
}

impl std::fmt::Debug for EndpointOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointOptions")
            .field("url", &self.url)
            .field("insecure", &self.insecure)
            .field("encrypted", &self.public_key_pem.is_some())
            .field("signed", &self.app_secret.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("HTTPS client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Seal(#[from] seal::SealError),
}

/// An endpoint under test.
pub struct Endpoint {
    client: reqwest::Client,
    url: String,
    sealer: Option<Sealer>,
    secret: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// An answer as read off the wire: status, JSON body (opened when sealed), latency.
struct Answer {
    status: u16,
    body: Value,
    latency: Duration,
}

impl Endpoint {
    pub fn new(options: EndpointOptions) -> Result<Self, EndpointError> {
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(pem) = &options.ca_pem {
            builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem)?);
        }
        if options.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let sealer = options
            .public_key_pem
            .as_deref()
            .map(Sealer::from_pem)
            .transpose()?;
        Ok(Self {
            client: builder.build()?,
            url: options.url,
            sealer,
            secret: options.app_secret,
        })
    }

    /// The checks made before the walk: `ping`, an error notification, and on an
    /// encrypted route 421 and (with an app secret) 432.
    pub async fn preflight(&self, report: &mut Report, entry: &str) {
        let ping = json!({"version": VERSION, "action": "ping"});
        report.record(
            "ping answers {\"data\":{\"status\":\"active\"}}",
            self.expect(&ping, json!({"data": {"status": "active"}}))
                .await,
        );
        let notice = json!({
            "version": VERSION,
            "action": "data_exchange",
            "flow_token": format!("conform-{}", uuid::Uuid::new_v4()),
            "screen": entry,
            "data": {
                "error": "conform-check",
                "error_message": "A deliberate error notification from flowgate-conform.",
            },
        });
        report.record(
            "error notification answers {\"data\":{\"acknowledged\":true}}",
            self.expect(&notice, json!({"data": {"acknowledged": true}}))
                .await,
        );
        if let Some(sealer) = &self.sealer {
            report.record(
                "undecryptable body answers 421",
                self.undecryptable(sealer).await,
            );
            if self.secret.is_some() {
                report.record(
                    "bad signature answers 432",
                    self.bad_signature(sealer).await,
                );
            }
        }
    }

    async fn expect(&self, payload: &Value, expected: Value) -> Result<(), String> {
        let answer = self.post(payload).await?;
        if answer.status != 200 {
            return Err(format!("HTTP {}, expected 200", answer.status));
        }
        if answer.body != expected {
            return Err(format!("answered {}, expected {expected}", answer.body));
        }
        Ok(())
    }

    /// A body whose AES key does not unwrap: the endpoint must say 421 so that
    /// WhatsApp re-fetches the public key.
    async fn undecryptable(&self, sealer: &Sealer) -> Result<(), String> {
        let mut wrapped = vec![0u8; sealer.wrapped_key_len()];
        let mut junk = [0u8; 48];
        aws_lc_rs::rand::fill(&mut wrapped).map_err(|_| "no randomness".to_owned())?;
        aws_lc_rs::rand::fill(&mut junk).map_err(|_| "no randomness".to_owned())?;
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let body = json!({
            "encrypted_flow_data": b64(&junk[16..]),
            "encrypted_aes_key": b64(&wrapped),
            "initial_vector": b64(&junk[..16]),
        })
        .to_string()
        .into_bytes();
        let signature = self.secret.as_deref().map(|s| seal::sign(s, &body));
        let status = self.send(body, signature).await?.status().as_u16();
        expect_status(status, 421)
    }

    /// A well-sealed `ping` signed with the wrong secret: the endpoint must say 432.
    async fn bad_signature(&self, sealer: &Sealer) -> Result<(), String> {
        let sealed = sealer
            .seal(&json!({"version": VERSION, "action": "ping"}))
            .map_err(|e| e.to_string())?;
        let signature = seal::sign("flowgate-conform: not the app secret", &sealed.body);
        let status = self
            .send(sealed.body.clone(), Some(signature))
            .await?
            .status()
            .as_u16();
        expect_status(status, 432)
    }

    async fn send(
        &self,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> Result<reqwest::Response, String> {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request
            .send()
            .await
            .map_err(|e| format!("no answer from {}: {e}", self.url))
    }

    /// Sends a payload, sealed and signed when the route is encrypted, and reads the
    /// answer, opened when sealed.
    async fn post(&self, payload: &Value) -> Result<Answer, String> {
        let started = Instant::now();
        let sealed = match &self.sealer {
            Some(sealer) => Some(sealer.seal(payload).map_err(|e| e.to_string())?),
            None => None,
        };
        let body = match &sealed {
            Some(sealed) => sealed.body.clone(),
            None => payload.to_string().into_bytes(),
        };
        let signature = match (&sealed, &self.secret) {
            (Some(_), Some(secret)) => Some(seal::sign(secret, &body)),
            _ => None,
        };
        let response = self.send(body, signature).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response
            .text()
            .await
            .map_err(|e| format!("HTTP {status}: the body could not be read: {e}"))?;
        let latency = started.elapsed();
        let body = match &sealed {
            None => {
                if !content_type.starts_with("application/json") {
                    return Err(format!(
                        "HTTP {status}: content type `{content_type}`, expected application/json"
                    ));
                }
                serde_json::from_str(&text)
                    .map_err(|_| format!("HTTP {status}: the body is not JSON"))?
            }
            Some(sealed) => match sealed.open(&text) {
                Ok(plain) => serde_json::from_slice(&plain)
                    .map_err(|_| format!("HTTP {status}: the opened answer is not JSON"))?,
                Err(reason) => {
                    if serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object()) {
                        return Err(format!(
                            "HTTP {status}: a plain JSON answer on an encrypted route \
                             (content type `{content_type}`); WhatsApp only reads answers \
                             sealed with the request's key"
                        ));
                    }
                    return Err(format!("HTTP {status}: {reason}"));
                }
            },
        };
        Ok(Answer {
            status,
            body,
            latency,
        })
    }
}

fn expect_status(status: u16, expected: u16) -> Result<(), String> {
    if status == expected {
        Ok(())
    } else {
        Err(format!("HTTP {status}, expected {expected}"))
    }
}

impl Transport for Endpoint {
    async fn call(&mut self, call: &Call) -> Result<Reply, String> {
        let mut payload = json!({
            "version": VERSION,
            "action": call.action.as_str(),
            "flow_token": call.flow_token,
        });
        if call.action != Action::Init {
            payload["screen"] = json!(call.screen);
            payload["data"] = Value::Object(call.data.clone());
        }
        let answer = self.post(&payload).await?;
        let outcome = match answer.status {
            200 => outcome(&answer.body, &call.flow_token)?,
            427 => Outcome::TokenInvalid {
                message: answer.body["error_msg"].as_str().unwrap_or("").to_owned(),
            },
            status => return Err(format!("HTTP {status}, expected 200: {}", answer.body)),
        };
        Ok(Reply {
            outcome,
            latency: answer.latency,
        })
    }
}

/// Reads an endpoint's answer as the SDK's [`Outcome`]: `{"screen", "data"}`, where
/// `SUCCESS` must carry `extension_message_response.params.flow_token`.
pub fn outcome(body: &Value, flow_token: &str) -> Result<Outcome, String> {
    let (Some(screen), Some(data)) = (
        body.get("screen").and_then(Value::as_str),
        body.get("data").and_then(Value::as_object),
    ) else {
        return Err(format!(
            "the answer is not {{\"screen\": string, \"data\": object}}: {body}"
        ));
    };
    if screen == flowgate_sdk::contract::SUCCESS {
        let Some(params) = body
            .pointer("/data/extension_message_response/params")
            .and_then(Value::as_object)
        else {
            return Err("SUCCESS without data.extension_message_response.params".into());
        };
        if params.get("flow_token").and_then(Value::as_str) != Some(flow_token) {
            return Err(
                "SUCCESS: extension_message_response.params.flow_token is not the request's flow token"
                    .into(),
            );
        }
        let mut params: Map<String, Value> = params.clone();
        params.remove("flow_token");
        return Ok(Outcome::Complete {
            params: Value::Object(params),
        });
    }
    Ok(Outcome::Screen {
        screen: screen.to_owned(),
        error_message: data
            .get(flowgate_sdk::contract::ERROR_MESSAGE)
            .and_then(Value::as_str)
            .map(str::to_owned),
        data: Value::Object(data.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_outcomes_and_success_needs_the_flow_token() {
        let screen = outcome(
            &json!({"screen": "A", "data": {"error_message": "no"}}),
            "t",
        );
        assert!(matches!(screen, Ok(Outcome::Screen { error_message: Some(m), .. }) if m == "no"));
        let done = json!({"screen": "SUCCESS", "data": {"extension_message_response":
            {"params": {"flow_token": "t", "x": 1}}}});
        assert_eq!(
            outcome(&done, "t"),
            Ok(Outcome::Complete {
                params: json!({"x": 1})
            })
        );
        assert!(outcome(&done, "other").unwrap_err().contains("flow_token"));
        assert!(outcome(&json!({"screen": "A"}), "t").is_err());
    }
}
