"""Unit tests of the example's own rules, driven through `FlowService` with a stand-in
for grpc's servicer context (what the end-to-end tests cannot stage: a race for one
token's completion, a clock far ahead, an answer no double can hold).

From the repository root: python3 -m unittest discover -s examples/python
"""

from __future__ import annotations

import threading
import unittest
from unittest import mock

import grpc

import service
import signup
from contract import dict_to_struct, pb
from sdk import Complete, Flow, Screen
from service import Calls, FlowService, Flows


class Aborted(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class Context:
    """What `FlowService` asks of grpc's servicer context."""

    def time_remaining(self):
        return 5.0

    def abort(self, code, message):
        raise Aborted(code, message)


def exchange(svc: FlowService, token: str, key: str, screen: str, data: dict):
    request = pb.DataExchangeRequest(
        context=pb.RequestContext(idempotency_key=key, attempt=1),
        flow_token=token,
        screen=screen,
        data=dict_to_struct(data),
    )
    return svc.DataExchange(request, Context())


def init(svc: FlowService, token: str, key: str):
    request = pb.InitRequest(
        context=pb.RequestContext(idempotency_key=key, attempt=1), flow_token=token
    )
    return svc.Init(request, Context())


class Racing(Flow):
    """Completes on every data_exchange, once two calls are both inside the handler."""

    flow_json = None

    def __init__(self):
        self.both_inside = threading.Barrier(2, timeout=5)

    def init(self, request):
        return Screen("A")

    def data_exchange(self, request):
        self.both_inside.wait()
        return Complete({"n": request.data.get("n")})


class CompletionRules(unittest.TestCase):
    def test_the_loser_of_a_completion_race_is_refused_again_when_resent(self):
        svc = FlowService(Flows(default="racing").register("racing", Racing()))
        answers = {}

        def complete(key, n):
            answers[key] = exchange(svc, "tok", key, "A", {"n": n})

        threads = [threading.Thread(target=complete, args=(k, n)) for n, k in enumerate(["k1", "k2"])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kinds = sorted(answer.WhichOneof("outcome") for answer in answers.values())
        self.assertEqual(kinds, ["complete", "token_invalid"])
        loser = next(k for k, a in answers.items() if a.WhichOneof("outcome") == "token_invalid")
        # The resend is refused again at once, not held as a call still in progress.
        again = exchange(svc, "tok", loser, "A", {"n": ["k1", "k2"].index(loser)})
        self.assertEqual(again.WhichOneof("outcome"), "token_invalid")

    def test_a_completed_token_stays_refused_after_the_outcomes_lapse(self):
        calls = Calls(ttl=60)
        svc = FlowService(Flows(default="signup").register("signup", signup.Signup()), calls)
        done = exchange(svc, "tok", "k1", "CONFIRMATION_SCREEN", {"email": "ada@example.com"})
        self.assertEqual(done.WhichOneof("outcome"), "complete")
        later = service.time.monotonic() + 3600
        with mock.patch.object(service.time, "monotonic", return_value=later):
            self.assertEqual(init(svc, "tok", "k2").WhichOneof("outcome"), "token_invalid")
            again = exchange(svc, "tok", "k3", "CONFIRMATION_SCREEN", {"email": "bob@example.com"})
            self.assertEqual(again.WhichOneof("outcome"), "token_invalid")


class Data(unittest.TestCase):
    def test_integers_a_double_would_change_are_refused(self):
        for ok in (2**53 - 1, -(2**53 - 1), 1.5, True, 0):
            dict_to_struct({"n": ok})
        for bad in (2**53, -(2**53), 2**64):
            with self.assertRaises(ValueError, msg=bad):
                dict_to_struct({"n": bad})
            with self.assertRaises(ValueError, msg=bad):
                dict_to_struct({"nested": [{"n": bad}]})

    def test_an_answer_with_such_an_integer_is_internal(self):
        class Big(Flow):
            flow_json = None

            def init(self, request):
                return Screen("A", {"id": 2**53 + 1})

        svc = FlowService(Flows(default="big").register("big", Big()))
        with self.assertRaises(Aborted) as refused:
            init(svc, "tok", "k")
        self.assertEqual(refused.exception.code, grpc.StatusCode.INTERNAL)

    def test_text_is_trimmed_as_in_the_rust_sdk(self):
        svc = FlowService(Flows(default="signup").register("signup", signup.Signup()))
        answer = exchange(svc, "tok", "k", "WELCOME_SCREEN", {"email": " ada@example.com "})
        self.assertEqual(answer.next_screen.screen, "CONFIRMATION_SCREEN")
        self.assertEqual(answer.next_screen.data["user_email"], "ada@example.com")
        blank = exchange(svc, "tok", "k2", "WELCOME_SCREEN", {"email": "   "})
        self.assertEqual(blank.next_screen.error_message, signup.INVALID_EMAIL)


if __name__ == "__main__":
    unittest.main()
