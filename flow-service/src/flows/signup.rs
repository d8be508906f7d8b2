//! `signup`: the sign-up flow of the solution providers' endpoint guide.
//!
//! INIT → `WELCOME_SCREEN`; submitting an email there → `CONFIRMATION_SCREEN`
//! (or `WELCOME_SCREEN` with an error for an invalid one); BACK → `WELCOME_SCREEN`;
//! submitting `CONFIRMATION_SCREEN` completes with the email. Its Flow JSON is
//! `flow-service/flows/signup.json`.
//!
//! Written against the [`Flow`] trait directly; `booking` shows the [`Router`](crate::router::Router).

use std::sync::LazyLock;

use serde_json::json;

use crate::contract::FlowJson;
use crate::sdk::{Flow, FlowError, Outcome, Request};

pub const WELCOME_SCREEN: &str = "WELCOME_SCREEN";
pub const CONFIRMATION_SCREEN: &str = "CONFIRMATION_SCREEN";
pub const WELCOME_MESSAGE: &str = "Welcome! Enter your email address to sign up.";
pub const INVALID_EMAIL: &str = "Please enter a valid email address.";

/// The Flow JSON a business uploads to WhatsApp for this flow.
pub const FLOW_JSON: &str = include_str!("../../flows/signup.json");

/// Parsed on first use, which [`Flows::register`](crate::service::Flows::register) makes
/// the service's start.
static SIGNUP_JSON: LazyLock<FlowJson> = LazyLock::new(|| {
    FlowJson::parse(FLOW_JSON).unwrap_or_else(|e| panic!("flow-service/flows/signup.json: {e}"))
});

#[derive(Debug, Clone, Copy, Default)]
pub struct Signup;

fn welcome() -> Outcome {
    Outcome::screen(WELCOME_SCREEN, json!({"welcome_message": WELCOME_MESSAGE}))
}

#[async_trait::async_trait]
impl Flow for Signup {
    async fn init(&self, _request: Request) -> Result<Outcome, FlowError> {
        Ok(welcome())
    }

    async fn data_exchange(&self, request: Request) -> Result<Outcome, FlowError> {
        match request.screen.as_str() {
            WELCOME_SCREEN => match request.text("email") {
                Some(email) if is_valid_email(email) => Ok(Outcome::screen(
                    CONFIRMATION_SCREEN,
                    json!({"user_email": email}),
                )),
                _ => Ok(welcome().with_error(INVALID_EMAIL)),
            },
            // The confirmation screen sends back the email this flow checked
            // (`${data.user_email}`), so an invalid one was not sent by a client
            // following the Flow JSON; nor may this screen lead back to the first.
            CONFIRMATION_SCREEN => {
                match request.text("email").or_else(|| request.text("user_email")) {
                    Some(email) if is_valid_email(email) => {
                        Ok(Outcome::complete(json!({"email": email})))
                    }
                    _ => Err(FlowError::Invalid(
                        "the email sent from CONFIRMATION_SCREEN is not valid".into(),
                    )),
                }
            }
            other => Err(FlowError::UnknownScreen(other.to_owned())),
        }
    }

    async fn back(&self, _request: Request) -> Result<Outcome, FlowError> {
        Ok(welcome())
    }

    fn flow_json(&self) -> Option<&FlowJson> {
        Some(&SIGNUP_JSON)
    }
}

/// A deliberately simple check: one `@`, a non-empty local part, a dotted domain,
/// no spaces, at most 254 characters.
pub fn is_valid_email(email: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.com", "x@sub.example.org"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.co",
            "a@b",
            "a@b.",
            "a@.b",
            "a b@c.d",
            "a@b@c.d",
            &format!("{}@b.co", "x".repeat(260)),
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }
}
