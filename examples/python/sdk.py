"""What a flow sees: a request, the outcomes it may answer, and the errors it may raise.

A flow never builds WhatsApp JSON and never picks a gRPC status code: it returns
an outcome (next screen, completion, token no longer valid) and raises a
`FlowError` only for what the contract calls infrastructure trouble or a request
it refuses. `service.py` turns both into the wire messages and status codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Context:
    """The `RequestContext` of a call (see proto/proto/flowgate/v1/flow.proto)."""

    flow: str
    request_id: str
    attempt: int
    idempotency_key: str
    version: str
    signature_verified: bool
    flow_token_signature: str


@dataclass(frozen=True)
class Request:
    """One INIT, data_exchange or BACK call."""

    context: Context
    flow_token: str
    screen: str
    data: dict
    # Seconds left before the gateway gives up on this call, or None without a
    # deadline. Bound any slow work (a database, an HTTP call) by it.
    time_remaining: float | None

    def text(self, key: str) -> str | None:
        """A string field of `data`, trimmed; None when absent, empty or not a
        string (as the Rust SDK's `Request::text`)."""
        value = self.data.get(key)
        return (value.strip() or None) if isinstance(value, str) else None


@dataclass(frozen=True)
class ErrorNotice:
    """A WhatsApp client's report that an earlier answer was unusable."""

    context: Context
    flow_token: str
    screen: str
    action: str
    error_key: str
    error_message: str
    data: dict


@dataclass(frozen=True)
class Screen:
    """Show `screen` with `data`; `error_message` shows as a validation error."""

    screen: str
    data: dict = field(default_factory=dict)
    error_message: str | None = None


@dataclass(frozen=True)
class Complete:
    """The flow is finished; the gateway adds the flow token to `params`."""

    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TokenInvalid:
    """The flow token is no longer valid; WhatsApp shows `message` (HTTP 427)."""

    message: str


Outcome = Screen | Complete | TokenInvalid


class FlowError(Exception):
    """A call the flow cannot answer with an outcome."""


class UnknownScreen(FlowError):
    """The request names a screen this flow does not have (INVALID_ARGUMENT)."""

    def __init__(self, screen: str):
        super().__init__(f"unknown screen `{screen}`")


class Invalid(FlowError):
    """The flow refuses the request as sent (INVALID_ARGUMENT, message shown)."""


class Unavailable(FlowError):
    """A dependency is down; the gateway may retry elsewhere (UNAVAILABLE)."""


class Flow:
    """Base class of a flow. Every action answers with an `Outcome`; the default
    `on_error` only acknowledges."""

    # Parsed Flow JSON (the file a business uploads to WhatsApp), or None.
    flow_json: dict | None = None

    def init(self, request: Request) -> Outcome:
        raise NotImplementedError

    def data_exchange(self, request: Request) -> Outcome:
        raise NotImplementedError

    def back(self, request: Request) -> Outcome:
        raise NotImplementedError

    def on_error(self, notice: ErrorNotice) -> None:
        return None


def load_flow_json(path: Path) -> dict:
    """Reads a Flow JSON file and checks the little this service relies on: a list
    of screens with ids, and no screen named `SUCCESS` (reserved for completion)."""
    flow_json = json.loads(path.read_text())
    ids = [screen["id"] for screen in flow_json["screens"]]
    if "SUCCESS" in ids:
        raise ValueError(f"{path}: SUCCESS is reserved and cannot be a screen")
    return flow_json


def screen_ids(flow_json: dict) -> set[str]:
    return {screen["id"] for screen in flow_json["screens"]}
