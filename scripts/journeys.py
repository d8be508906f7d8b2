#!/usr/bin/env python3
"""Runs sign-up journeys against a flowgate gateway over HTTPS and counts failures.

A journey is the reference `signup` flow from start to end, each step checked:
INIT -> WELCOME_SCREEN; data_exchange from WELCOME_SCREEN with an email ->
CONFIRMATION_SCREEN showing it; data_exchange from CONFIRMATION_SCREEN -> SUCCESS
whose params carry the flow token and the email. Any other answer, status or
transport error fails the journey; nothing is retried here, so a failure the gateway
lets through is counted.

  journeys.py --url https://127.0.0.1:8443/flow-endpoint --count 1
  journeys.py --url ... --duration 20 --concurrency 4 --after-file /tmp/killed-at

With --after-file, the file (written by whoever disrupts the stack) holds a Unix time;
at least one journey must have started after it and passed, so a run cannot pass by
having stopped early. Exit 0 when every journey passed, 1 otherwise.
"""

import argparse
import http.client
import json
import ssl
import sys
import threading
import time
import uuid
from urllib.parse import urlparse


def call(url, body, timeout):
    """One POST; returns (status, parsed JSON or raw text)."""
    # The stack's certificate is generated at start: encryption without verification,
    # as curl -k.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=timeout, context=context)
    try:
        connection.request("POST", url.path, json.dumps(body), {"content-type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
    finally:
        connection.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def expect(step, status, answer, screen):
    if status != 200:
        raise AssertionError(f"{step}: HTTP {status} {str(answer)[:200]}")
    if not isinstance(answer, dict) or answer.get("screen") != screen:
        raise AssertionError(f"{step}: expected screen {screen}, got {str(answer)[:200]}")
    return answer.get("data") or {}


def journey(url, run, n, timeout):
    token = f"smoke-{run}-{n}"
    email = f"user{n}@example.com"
    base = {"version": "3.0", "flow_token": token}
    expect("INIT", *call(url, {**base, "action": "INIT"}, timeout), "WELCOME_SCREEN")
    data = expect(
        "WELCOME_SCREEN",
        *call(url, {**base, "action": "data_exchange", "screen": "WELCOME_SCREEN", "data": {"email": email}}, timeout),
        "CONFIRMATION_SCREEN",
    )
    if data.get("user_email") != email:
        raise AssertionError(f"WELCOME_SCREEN: expected user_email {email}, got {data}")
    data = expect(
        "CONFIRMATION_SCREEN",
        *call(url, {**base, "action": "data_exchange", "screen": "CONFIRMATION_SCREEN",
                    "data": {"user_email": email}}, timeout),
        "SUCCESS",
    )
    params = data.get("extension_message_response", {}).get("params", {})
    if params.get("flow_token") != token or params.get("email") != email:
        raise AssertionError(f"SUCCESS: unexpected params {params}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, help="journeys to run (default: until --duration)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to keep starting journeys")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=15.0, help="per request, seconds")
    parser.add_argument("--after-file")
    args = parser.parse_args()

    url = urlparse(args.url)
    run = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    results = []  # (started, seconds, error or None)
    counter = iter(range(10**9))
    end = time.time() + args.duration

    def worker():
        while True:
            with lock:
                n = next(counter)
            if (args.count is not None and n >= args.count) or (args.count is None and time.time() >= end):
                return
            started = time.time()
            try:
                journey(url, run, n, args.timeout)
                error = None
            except Exception as e:  # every failure counts, whatever its kind
                error = f"journey {n}: {type(e).__name__}: {e}"
            with lock:
                results.append((started, time.time() - started, error))
                if error:
                    print(error, file=sys.stderr, flush=True)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    failed = sum(1 for r in results if r[2])
    passed = len(results) - failed
    times = sorted(r[1] for r in results)
    p50 = times[len(times) // 2] * 1000 if times else 0
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000 if times else 0
    summary = f"journeys: {passed} passed, {failed} failed (3 requests each; p50 {p50:.0f} ms, p99 {p99:.0f} ms)"
    ok = failed == 0 and passed > 0
    if args.after_file:
        try:
            with open(args.after_file) as f:
                after = float(f.read().strip())
            late = sum(1 for r in results if r[0] > after and not r[2])
            summary += f"; {late} passed after the disruption"
            ok = ok and late > 0
        except (OSError, ValueError):
            summary += "; no disruption time recorded"
            ok = False
    print(summary, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
