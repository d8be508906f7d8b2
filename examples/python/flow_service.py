#!/usr/bin/env python3
"""The flowgate reference flow service in Python: the `signup` flow behind the
`flowgate.v1.FlowService` gRPC contract, with the standard health service.

    pip install -r examples/python/requirements.txt
    python3 examples/python/flow_service.py

Environment:
    FLOW_SERVICE_LISTEN       address to serve on (default 127.0.0.1:50051)
    FLOW_SERVICE_DRAIN_DELAY  how long to keep serving after SIGTERM while
                              health reports NOT_SERVING (default 2s; 500ms, 1s, ...)
    FLOW_SERVICE_MAX_IN_FLIGHT calls served at once; more are refused with
                              RESOURCE_EXHAUSTED, which the gateway turns into 503
                              `overloaded` (default 64)
    FLOW_SERVICE_LOG          log level (default INFO)
    FLOW_SERVICE_AUTH_TOKEN   when set (or FLOW_SERVICE_AUTH_TOKEN_FILE, a file
                              holding it), every call but gRPC health must carry
                              `authorization: Bearer <token>` (the gateway's
                              FLOWGATE_BACKEND_AUTH_TOKEN); others get UNAUTHENTICATED

Parts, in reading order: `contract.py` (stubs generated from proto/ at first run),
`sdk.py` (what a flow sees), `signup.py` (the flow), `service.py` (the servicer
and the contract's rules), and this file (server, health, shutdown).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402

from contract import pb, pb_grpc  # noqa: E402
from service import Flows, FlowService  # noqa: E402
from signup import Signup  # noqa: E402

log = logging.getLogger("flow_service")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FlowService"].full_name


def parse_duration(text: str) -> float:
    """Reads `1500ms`, `2s`, `1m` (the Rust services' syntax) as seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m)", text)
    if not match:
        raise SystemExit(f"invalid duration {text!r}: expected e.g. 500ms, 2s or 1m")
    n, unit = int(match[1]), match[2]
    return n / 1000 if unit == "ms" else n * (60 if unit == "m" else 1)


def reference_flows() -> Flows:
    """The flows this service runs; an empty flow name in a call means `signup`."""
    return Flows(default="signup").register("signup", Signup())


REFUSED = (
    "this flow service requires `authorization: Bearer <token>` with its token "
    "(FLOW_SERVICE_AUTH_TOKEN); the call had none or another"
)


class BearerToken(grpc.ServerInterceptor):
    """Refuses every call but gRPC health that lacks `authorization: Bearer <token>`
    with UNAUTHENTICATED, before any handler runs (see the service comment in
    proto/flowgate/v1/flow.proto). The comparison takes constant time."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        def refuse(_request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSED)

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(handler_call_details)
        header = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(header.encode(), self._expected):
            return continuation(handler_call_details)
        return self._refusal


def auth_token() -> str | None:
    """FLOW_SERVICE_AUTH_TOKEN, or the trimmed contents of FLOW_SERVICE_AUTH_TOKEN_FILE."""
    value = os.environ.get("FLOW_SERVICE_AUTH_TOKEN", "").strip()
    path = os.environ.get("FLOW_SERVICE_AUTH_TOKEN_FILE", "")
    if value and path:
        raise SystemExit("set FLOW_SERVICE_AUTH_TOKEN or FLOW_SERVICE_AUTH_TOKEN_FILE, not both")
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as e:
            raise SystemExit(f"invalid FLOW_SERVICE_AUTH_TOKEN_FILE {path!r}: {e}")
        if not value:
            raise SystemExit(f"invalid FLOW_SERVICE_AUTH_TOKEN_FILE {path!r}: the token file is empty")
    return value or None


def serve(listen: str, drain: float, max_in_flight: int, token: str | None = None) -> None:
    # Health watches hold a worker each while open, so the pool is larger than
    # the number of flow calls admitted at once.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_in_flight + 16),
        maximum_concurrent_rpcs=max_in_flight + 16,
        interceptors=[BearerToken(token)] if token else [],
    )
    flows = reference_flows()
    pb_grpc.add_FlowServiceServicer_to_server(FlowService(flows), server)
    healthy = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(healthy, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise SystemExit(f"cannot listen on {listen}")
    stopping = threading.Event()

    def on_signal(signum, _frame):
        log.info("%s received: draining", signal.Signals(signum).name)
        stopping.set()

    # Installed before serving, so that a stop requested at any point drains.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    # The gateway checks the empty service name; the named one is for grpcurl and probes.
    for name in ("", SERVICE_NAME):
        healthy.set(name, health_pb2.HealthCheckResponse.SERVING)
    # The bound address, port included when FLOW_SERVICE_LISTEN asked for port 0;
    # the end-to-end tests read it from this line.
    host = listen.rsplit(":", 1)[0]
    log.info("flow service listening on %s:%d (flows: %s)", host, port, ", ".join(flows.names()))

    stopping.wait()

    # Drain: report NOT_SERVING so that gateways stop choosing this replica, keep
    # serving what still arrives for `drain` seconds, then stop, letting calls in
    # flight finish within a second. Health watches are cancelled by the stop.
    healthy.enter_graceful_shutdown()
    # A second signal cuts the drain short.
    stopping.clear()
    stopping.wait(drain)
    server.stop(grace=1.0).wait()
    log.info("flow service stopped")


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("FLOW_SERVICE_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    serve(
        listen=os.environ.get("FLOW_SERVICE_LISTEN", "127.0.0.1:50051"),
        drain=parse_duration(os.environ.get("FLOW_SERVICE_DRAIN_DELAY", "2s")),
        max_in_flight=int(os.environ.get("FLOW_SERVICE_MAX_IN_FLIGHT", "64")),
        token=auth_token(),
    )


if __name__ == "__main__":
    main()
