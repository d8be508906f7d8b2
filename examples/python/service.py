"""The `flowgate.v1.FlowService` servicer: routes calls to flows and applies the
contract's rules around every handler.

The rules, from proto/proto/flowgate/v1/flow.proto:

* business outcomes are `FlowResponse` messages with status OK; status codes
  mean infrastructure trouble only (NOT_FOUND for an unknown flow,
  INVALID_ARGUMENT for a request refused as sent, UNAVAILABLE for a dependency
  that is down, INTERNAL for a bug, DEADLINE_EXCEEDED past the deadline);
* an empty flow name is the default flow;
* a repeated idempotency key is the same call: it gets the first call's outcome
  and the handler does not run again;
* work past the call's deadline is wasted: a call that arrives after its
  deadline is not run;
* error notifications are acknowledged by answering OK.

On top of those, as the Rust reference service does: a completed flow token is
answered `TokenInvalid` on every later call except a resend of its completion
(here, while this process remembers the token: see `Calls`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict

import grpc

from contract import dict_to_struct, pb, pb_grpc, struct_to_dict
from sdk import (
    Complete,
    Context,
    ErrorNotice,
    Flow,
    FlowError,
    Invalid,
    Request,
    Screen,
    TokenInvalid,
    Unavailable,
    UnknownScreen,
    screen_ids,
)

log = logging.getLogger("flow_service")

TOKEN_NO_LONGER_VALID = "This form is no longer available."


def token_hash(token: str) -> str:
    """How a flow token appears in logs: the first 8 bytes of its SHA-256, in hex
    (the same as the Rust services' `token_hash`)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class Flows:
    """Flows by name, and the default flow an empty name means."""

    def __init__(self, default: str):
        self.default = default
        self._by_name: dict[str, Flow] = {}

    def register(self, name: str, flow: Flow) -> "Flows":
        self._by_name[name] = flow
        return self

    def get(self, name: str) -> tuple[str, Flow] | None:
        name = name or self.default
        flow = self._by_name.get(name)
        return (name, flow) if flow is not None else None

    def names(self) -> list[str]:
        return sorted(self._by_name)


_IN_PROGRESS = object()


class Calls:
    """Outcomes by idempotency key, and completed tokens, in this process's memory.

    Enough for one replica and for the example: a restart forgets them, and
    replicas do not share them. A production service keeps both in a database
    shared by its replicas, as the Rust service does (`flow-service/server/src/store`).
    Outcomes lapse after `ttl` seconds; completed tokens never lapse, but beyond
    `limit` of either the oldest are forgotten, to bound the memory they take.
    """

    def __init__(self, ttl: float = 24 * 3600, limit: int = 100_000):
        self._ttl, self._limit = ttl, limit
        self._lock = threading.Lock()
        self._outcomes: OrderedDict[tuple[str, str], tuple[float, object]] = OrderedDict()
        # Completed tokens, oldest first (an ordered set: the values are unused).
        self._completed: OrderedDict[str, None] = OrderedDict()

    def _prune(self, now: float) -> None:
        outcomes = self._outcomes
        while outcomes and (len(outcomes) > self._limit or next(iter(outcomes.values()))[0] < now):
            outcomes.popitem(last=False)
        while len(self._completed) > self._limit:
            self._completed.popitem(last=False)

    def claim(self, token: str, key: str):
        """`None` when this call is new (and now claimed), `_IN_PROGRESS` while the
        first call with this key still runs, else the stored `FlowResponse`."""
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            entry = self._outcomes.get((token, key))
            if entry is not None:
                return entry[1]
            self._outcomes[(token, key)] = (now + self._ttl, _IN_PROGRESS)
            return None

    def release(self, token: str, key: str) -> None:
        """Forgets a claimed call that recorded nothing, so that a retry runs it."""
        with self._lock:
            self._outcomes.pop((token, key), None)

    def is_completed(self, token: str) -> bool:
        with self._lock:
            return token in self._completed

    def finish(self, token: str, key: str | None, response, completes: bool) -> bool:
        """Records a call's outcome; False when another call completed the token first."""
        now = time.monotonic()
        with self._lock:
            if completes:
                if token in self._completed:
                    return False
                self._completed[token] = None
            if key:
                self._outcomes[(token, key)] = (now + self._ttl, response)
            return True


def _context(message) -> Context:
    c = message.context
    return Context(
        flow=c.flow,
        request_id=c.request_id,
        attempt=c.attempt,
        idempotency_key=c.idempotency_key,
        version=c.version,
        signature_verified=c.signature_verified,
        flow_token_signature=pb.FlowTokenSignature.Name(c.flow_token_signature),
    )


def _token_invalid(message: str = TOKEN_NO_LONGER_VALID):
    return pb.FlowResponse(token_invalid=pb.TokenInvalid(message=message))


class FlowService(pb_grpc.FlowServiceServicer):
    """One RPC per action; each goes through `_exchange` or `NotifyError`.

    Beside them, the contract's optional `ListFlows` / `GetFlow`, for tools such as
    the gateway's preview: they answer from `self.flows.names()` and each flow's
    `flow_json`.
    """

    def __init__(self, flows: Flows, calls: Calls | None = None):
        self.flows = flows
        self.calls = calls or Calls()

    def Init(self, request, context):
        return self._exchange("INIT", request, context)

    def DataExchange(self, request, context):
        return self._exchange("data_exchange", request, context)

    def Back(self, request, context):
        return self._exchange("BACK", request, context)

    def NotifyError(self, request, context):
        ctx = _context(request)
        name, flow = self._flow(ctx.flow, context)
        notice = ErrorNotice(
            context=ctx,
            flow_token=request.flow_token,
            screen=request.screen,
            action=request.action,
            error_key=request.error_key,
            error_message=request.error_message,
            data=struct_to_dict(request.data),
        )
        # The message and data may echo user input: they stay out of info logs.
        log.info(
            "error notification flow=%s action=%s screen=%s error_key=%s token=%s request_id=%s",
            name, notice.action, notice.screen, notice.error_key,
            token_hash(notice.flow_token), ctx.request_id,
        )
        try:
            flow.on_error(notice)
        except FlowError as error:
            self._abort(error, name, "error_notification", context)
        return pb.NotifyErrorResponse()

    def ListFlows(self, request, context):
        # This service accepts any non-empty flow token: none is signed.
        return pb.ListFlowsResponse(
            flows=[
                pb.FlowSummary(name=name, is_default=name == self.flows.default, signed_tokens=False)
                for name in self.flows.names()
            ]
        )

    def GetFlow(self, request, context):
        name, flow = self._flow(request.flow, context)
        # The Flow JSON as loaded (equal as JSON to the file); empty when the flow has none.
        text = json.dumps(flow.flow_json) if flow.flow_json is not None else ""
        return pb.GetFlowResponse(name=name, flow_json=text)

    def _flow(self, name: str, context) -> tuple[str, Flow]:
        found = self.flows.get(name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no flow named `{name or self.flows.default}`")
        return found

    def _exchange(self, action: str, message, context):
        ctx = _context(message)
        name, flow = self._flow(ctx.flow, context)
        if not message.flow_token:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "flow_token is required")
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            # The gateway has already answered; running now would be wasted work.
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline has passed")
        token, key = message.flow_token, ctx.idempotency_key
        fields = dict(
            flow=name, action=action, screen=message.screen,
            token=token_hash(token), request_id=ctx.request_id,
        )
        if key:
            stored = self.calls.claim(token, key)
            if stored is _IN_PROGRESS:
                context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    "the same call is still in progress; retry shortly",
                )
            if stored is not None:
                # A completion is answered again as it was; any other stored answer
                # gives way once the token is completed.
                if stored.WhichOneof("outcome") != "complete" and self.calls.is_completed(token):
                    _log("flow token refused: already completed", fields)
                    return _token_invalid()
                _log("repeated call answered with its stored outcome", fields)
                return stored
        try:
            response = self._run(action, flow, message, ctx, context, fields)
        except BaseException:
            # Nothing was recorded for this call: free its key so a retry runs it.
            if key:
                self.calls.release(token, key)
            raise
        return response

    def _run(self, action, flow: Flow, message, ctx: Context, context, fields):
        token, key = message.flow_token, ctx.idempotency_key
        if self.calls.is_completed(token):
            _log("flow token refused: already completed", fields)
            response = _token_invalid()
            self.calls.finish(token, key, response, completes=False)
            return response
        request = Request(
            context=ctx,
            flow_token=token,
            screen=message.screen,
            data=struct_to_dict(message.data),
            time_remaining=context.time_remaining(),
        )
        handler = {"INIT": flow.init, "data_exchange": flow.data_exchange, "BACK": flow.back}[action]
        try:
            outcome = handler(request)
        except FlowError as error:
            self._abort(error, fields["flow"], action, context)
        except Exception:
            log.exception("flow failed flow=%s action=%s", fields["flow"], action)
            context.abort(grpc.StatusCode.INTERNAL, "the flow failed; see the flow service's log")
        response = self._to_proto(outcome, flow, fields, context)
        if not self.calls.finish(token, key, response, completes=isinstance(outcome, Complete)):
            # Nothing was recorded for this call: free its key, so that its resend is
            # refused again at once instead of finding the key still in progress.
            if key:
                self.calls.release(token, key)
            _log("flow token refused: another call completed it first", fields)
            return _token_invalid()
        _log("flow call", fields, outcome=response.WhichOneof("outcome"))
        return response

    def _to_proto(self, outcome, flow: Flow, fields, context):
        """The wire message for an outcome; an answer this flow's Flow JSON does
        not allow is a bug in the flow, refused with INTERNAL before it leaves."""
        try:
            if isinstance(outcome, Screen):
                if flow.flow_json is not None and outcome.screen not in screen_ids(flow.flow_json):
                    raise ValueError(f"screen `{outcome.screen}` is not in the flow's Flow JSON")
                if not outcome.screen or outcome.screen == "SUCCESS":
                    raise ValueError(f"`{outcome.screen}` cannot be a screen")
                return pb.FlowResponse(
                    next_screen=pb.NextScreen(
                        screen=outcome.screen,
                        data=dict_to_struct(outcome.data),
                        error_message=outcome.error_message,
                    )
                )
            if isinstance(outcome, Complete):
                return pb.FlowResponse(complete=pb.Complete(params=dict_to_struct(outcome.params)))
            if isinstance(outcome, TokenInvalid):
                return _token_invalid(outcome.message)
            raise ValueError(f"not an outcome: {type(outcome).__name__}")
        except ValueError as error:
            log.error("answer refused flow=%s action=%s: %s", fields["flow"], fields["action"], error)
            context.abort(grpc.StatusCode.INTERNAL, f"the flow's answer is unusable: {error}")

    @staticmethod
    def _abort(error: FlowError, flow: str, action: str, context):
        """The one mapping of flow errors to status codes."""
        if isinstance(error, (UnknownScreen, Invalid)):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if isinstance(error, Unavailable):
            log.warning("flow dependency unavailable flow=%s action=%s: %s", flow, action, error)
            context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        log.error("flow failed flow=%s action=%s: %s", flow, action, error)
        context.abort(grpc.StatusCode.INTERNAL, "the flow failed; see the flow service's log")


def _log(message: str, fields: dict, **extra) -> None:
    items = {**fields, **extra}
    log.info("%s %s", message, " ".join(f"{k}={v}" for k, v in items.items()))
