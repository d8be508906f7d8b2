"""`signup`: the sign-up flow of the solution providers' endpoint guide.

The same screens, messages and Flow JSON as the Rust reference flow
(`flow-service/src/flows/signup.rs`, `flow-service/flows/signup.json`):
INIT -> WELCOME_SCREEN; submitting an email there -> CONFIRMATION_SCREEN (or
WELCOME_SCREEN with an error for an invalid one); BACK -> WELCOME_SCREEN;
submitting CONFIRMATION_SCREEN completes with the email.
"""

from __future__ import annotations

from pathlib import Path

from sdk import Complete, Flow, Invalid, Request, Screen, UnknownScreen, load_flow_json

WELCOME_SCREEN = "WELCOME_SCREEN"
CONFIRMATION_SCREEN = "CONFIRMATION_SCREEN"
WELCOME_MESSAGE = "Welcome! Enter your email address to sign up."
INVALID_EMAIL = "Please enter a valid email address."

# One Flow JSON for both implementations, so they cannot drift apart.
FLOW_JSON_PATH = Path(__file__).resolve().parent.parent.parent / "flow-service" / "flows" / "signup.json"


def is_valid_email(email: str) -> bool:
    """A deliberately simple check: one `@`, a non-empty local part, a dotted
    domain, no spaces, at most 254 characters."""
    local, at, domain = email.partition("@")
    return (
        bool(at)
        and len(email) <= 254
        and bool(local)
        and "@" not in domain
        and not any(c.isspace() for c in email)
        and len(domain.split(".")) >= 2
        and all(domain.split("."))
    )


def _welcome(error_message: str | None = None) -> Screen:
    return Screen(WELCOME_SCREEN, {"welcome_message": WELCOME_MESSAGE}, error_message)


class Signup(Flow):
    flow_json = load_flow_json(FLOW_JSON_PATH)

    def init(self, request: Request) -> Screen:
        return _welcome()

    def data_exchange(self, request: Request):
        if request.screen == WELCOME_SCREEN:
            email = request.text("email")
            if email is not None and is_valid_email(email):
                return Screen(CONFIRMATION_SCREEN, {"user_email": email})
            return _welcome(INVALID_EMAIL)
        if request.screen == CONFIRMATION_SCREEN:
            # The confirmation screen sends back the email this flow checked
            # (`${data.user_email}`), so an invalid one was not sent by a client
            # following the Flow JSON.
            email = request.text("email") or request.text("user_email")
            if email is not None and is_valid_email(email):
                return Complete({"email": email})
            raise Invalid("the email sent from CONFIRMATION_SCREEN is not valid")
        raise UnknownScreen(request.screen)

    def back(self, request: Request) -> Screen:
        return _welcome()
