"""The sign-up flow's first step on pywa, for flowgate's benchmark.

The same behaviour as flowgate's `signup` flow (flow-service/src/flows/signup.rs):
INIT -> WELCOME_SCREEN with the welcome message; data_exchange on WELCOME_SCREEN with a
valid email -> CONFIRMATION_SCREEN with `user_email`, an invalid one -> WELCOME_SCREEN
with an error message; data_exchange on CONFIRMATION_SCREEN completes with the email;
BACK -> WELCOME_SCREEN. pywa decrypts each request (RSA-OAEP + AES-128-GCM) and
encrypts each answer, as flowgate's gateway does in Meta mode.

Run by `flowgate-bench` under uvicorn: BENCH_PRIVATE_KEY_FILE names the business
private key (from `flowgate-gateway keygen`), BENCH_APP_SECRET the app secret.
"""

import os

from fastapi import FastAPI
from pywa import WhatsApp
from pywa.types.flows import FlowRequest, FlowResponse

WELCOME_MESSAGE = "Welcome! Enter your email address to sign up."
INVALID_EMAIL = "Please enter a valid email address."

app = FastAPI()

with open(os.environ["BENCH_PRIVATE_KEY_FILE"], encoding="utf-8") as key_file:
    private_key = key_file.read()

wa = WhatsApp(
    server=app,
    verify_token="bench",  # pywa needs one to serve a FastAPI app; no webhook is used
    app_secret=os.environ.get("BENCH_APP_SECRET"),
    business_private_key=private_key,
)


def is_valid_email(email) -> bool:
    """flowgate's deliberately simple check, restated."""
    if not isinstance(email, str) or "@" not in email:
        return False
    local, domain = email.split("@", 1)
    labels = domain.split(".")
    return (
        len(email) <= 254
        and local != ""
        and "@" not in domain
        and not any(c.isspace() for c in email)
        and len(labels) >= 2
        and all(labels)
    )


def welcome(req: FlowRequest, error_message: str | None = None) -> FlowResponse:
    return req.respond(
        screen="WELCOME_SCREEN",
        data={"welcome_message": WELCOME_MESSAGE},
        error_message=error_message,
    )


@wa.on_flow_request("/flow-endpoint")
def signup(_: WhatsApp, req: FlowRequest) -> FlowResponse:
    """INIT, BACK, and anything not handled below."""
    return welcome(req)


@signup.on_data_exchange(screen="WELCOME_SCREEN")
def on_welcome(_: WhatsApp, req: FlowRequest) -> FlowResponse:
    email = (req.data or {}).get("email")
    if is_valid_email(email):
        return req.respond(screen="CONFIRMATION_SCREEN", data={"user_email": email})
    return welcome(req, INVALID_EMAIL)


@signup.on_data_exchange(screen="CONFIRMATION_SCREEN")
def on_confirmation(_: WhatsApp, req: FlowRequest) -> FlowResponse:
    data = req.data or {}
    email = data.get("email") or data.get("user_email")
    return req.respond(close_flow=True, data={"email": email})
