"""retry policy and the JetStream client's retry loop: which failures are retried, how long to wait, and what a
write does when its outcome is unknown; and the connection's one-line failures.

The pure functions (retry.py, connection.connect_failure) are tested directly; the retry loop runs against a
scripted ``_request_once`` with the client's own clock and pause replaced on the instance (no server, no sleeping).
tests/integration/test_retry.py does the same against a real cluster with a killed leader.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import consumer, errors, retry  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.connection import connect_failure  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import (  # noqa: E402
    ApiError, JetStreamError, RetryBudgetExhausted, TransportError)
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import (  # noqa: E402
    JetStreamClient, config_holds, recheck_stream_config, recheck_stream_deleted)
from ansible_collections.athlete_ally.nats.plugins.module_utils.retry import (  # noqa: E402
    DEFINITIVE, NOT_APPLIED, UNKNOWN)


@pytest.mark.parametrize("api", [
    "INFO", "STREAM.INFO.AA_CORE_HOT", "STREAM.LIST", "STREAM.NAMES", "CONSUMER.INFO.S.c", "CONSUMER.LIST.S",
    "CONSUMER.NAMES.S", "STREAM.MSG.GET.S", "DIRECT.GET.S", "DIRECT.GET.S.subj.a",
])
def test_reads(api):
    assert retry.is_read(api)


@pytest.mark.parametrize("api", [
    "STREAM.CREATE.S", "STREAM.UPDATE.S", "STREAM.DELETE.S", "STREAM.PURGE.S", "STREAM.MSG.DELETE.S",
    "CONSUMER.CREATE.S.c", "CONSUMER.CREATE.S.c.f", "CONSUMER.DURABLE.CREATE.S.c", "CONSUMER.DELETE.S.c",
    "CONSUMER.PAUSE.S.c", "INFOS", "STREAM.INFOX.S", "STREAM.LEADER.STEPDOWN.S",
])
def test_writes(api):
    assert not retry.is_read(api)


def test_transient_err_codes_are_the_no_leader_ones():
    # nats-server server/errors.json: JSClusterIncompleteErr, JSClusterNoPeersErrF, JSClusterNotAssignedErr,
    # JSClusterNotAvailErr, JSClusterNotLeaderErr, JSStreamTooManyRequests.
    assert retry.TRANSIENT_ERR_CODES == {10004, 10005, 10007, 10008, 10009, 10167}
    for definitive in (10059, 10014, 10058, 10065, 10148, 10149, 10039, 10076):
        assert retry.classify("api_error", definitive) == DEFINITIVE


@pytest.mark.parametrize("kind, code, outcome", [
    ("timeout", None, UNKNOWN),
    ("connection_lost", None, UNKNOWN),
    ("no_responders", None, NOT_APPLIED),
    ("disconnected", None, NOT_APPLIED),
    ("api_error", 10008, NOT_APPLIED),
    ("api_error", 10009, NOT_APPLIED),
    ("api_error", 10065, DEFINITIVE),
    ("api_error", 10058, DEFINITIVE),
    ("api_error", 10059, DEFINITIVE),
    ("api_error", None, DEFINITIVE),
])
def test_classify(kind, code, outcome):
    assert retry.classify(kind, code) == outcome


@pytest.mark.parametrize("read, outcome, has_recheck, allowed", [
    (True, UNKNOWN, False, True),
    (True, NOT_APPLIED, False, True),
    (True, DEFINITIVE, False, False),
    (False, NOT_APPLIED, False, True),
    (False, UNKNOWN, False, False),  # a timed-out write is never blindly resent
    (False, UNKNOWN, True, True),
    (False, DEFINITIVE, True, False),
])
def test_may_retry(read, outcome, has_recheck, allowed):
    assert retry.may_retry(read, outcome, has_recheck) is allowed


def test_backoff_doubles_from_a_quarter_second_to_two():
    assert [retry.backoff(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]


def test_retry_plan_stays_inside_the_budget():
    assert retry.retry_plan(30, 0.0, 1) == 0.25
    assert retry.retry_plan(30, 27.9, 5) == 2.0
    assert retry.retry_plan(30, 28.0, 5) is None  # 28 + 2 would reach the budget
    assert retry.retry_plan(0, 0.0, 1) is None
    assert retry.retry_plan(0.2, 0.0, 1) is None


def test_summarize_warnings_dedupes_and_caps():
    assert retry.summarize_warnings(["a", "b", "a"]) == ["a (x2)", "b"]
    lines = ["line %d" % i for i in range(25)]
    out = retry.summarize_warnings(lines, cap=10)
    assert len(out) == 10 and out[:9] == lines[:9]
    assert out[-1] == "... and 16 more retry warnings (25 in all)"


def test_config_holds_compares_only_the_asked_fields():
    live = {"name": "S", "subjects": ["a.>"], "max_age": 5, "metadata": {"_nats.ver": "2.15.1", "team": "x"}}
    assert config_holds({"subjects": ["a.>"], "metadata": {"team": "x"}}, live)
    assert not config_holds({"subjects": ["a.>", "b.>"]}, live)
    assert not config_holds({"max_bytes": 1}, live)


def test_consumer_module_uses_the_err_codes_of_errors():
    for name in ("CONSUMER_ALREADY_EXISTS", "CONSUMER_DOES_NOT_EXIST", "CONSUMER_NOT_FOUND", "STREAM_NOT_FOUND"):
        assert getattr(consumer, name) is getattr(errors, name)


# -- the retry loop, scripted ----------------------------------------------------------------------
def timeout_error():
    return TransportError("request $JS.API.X to nats://127.0.0.1:1 timed out after 5.0s; raise request_timeout "
                          "or check that the stream has a leader (cluster quorum)", "timeout", "timed out after 5.0s")


def api_error(api, code, text):
    return ApiError(api, {"code": 503, "err_code": code, "description": text})


class Scripted(JetStreamClient):
    """Answers from ``script`` (an exception is raised, anything else returned); records what was sent and the
    pauses it was asked for (``slept``) on a clock that only moves when a test moves it (``now``)."""

    def __init__(self, script, budget=30.0):
        super().__init__({"servers": ["nats://127.0.0.1:1"], "retry_budget": budget})
        self.script = list(script)
        self.sent = []
        self.slept = []
        self.now = [0.0]
        self.sleep = self.slept.append
        self.clock = lambda: self.now[0]

    def _request_once(self, api, payload, timeout):
        self.sent.append(api)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def test_read_is_retried_through_timeouts_and_no_leader_replies():
    js = Scripted([timeout_error(), api_error("STREAM.INFO.S", 10008, "JetStream system temporarily unavailable"),
                   {"config": {"name": "S"}}])
    assert js.request("STREAM.INFO.S") == {"config": {"name": "S"}}
    assert js.sent == ["STREAM.INFO.S"] * 3
    assert js.slept == [0.25, 0.5]
    assert len(js.warnings) == 2
    assert js.warnings[0].startswith("STREAM.INFO.S: timed out after 5.0s (no stream leader?); retrying in 0.25s (")
    assert js.warnings[0].endswith("of the 30s retry budget used)")
    assert "JetStream system temporarily unavailable (err_code 10008); retrying in 0.5s" in js.warnings[1]


def test_definitive_error_is_not_retried():
    js = Scripted([api_error("STREAM.CREATE.S", 10065, "subjects overlap with an existing stream")])
    with pytest.raises(ApiError) as err:
        js.request("STREAM.CREATE.S", {"name": "S"})
    assert err.value.err_code == 10065
    assert js.sent == ["STREAM.CREATE.S"] and js.slept == [] and js.warnings == []


def test_budget_zero_gives_the_original_error():
    js = Scripted([timeout_error()], budget=0)
    with pytest.raises(TransportError) as err:
        js.request("STREAM.INFO.S")
    assert str(err.value) == str(timeout_error())
    assert js.warnings == [] and js.slept == []


def test_timed_out_write_without_recheck_is_not_resent():
    js = Scripted([timeout_error()])
    with pytest.raises(JetStreamError) as err:
        js.request("STREAM.UPDATE.S", {"name": "S"})
    assert js.sent == ["STREAM.UPDATE.S"]
    assert "not resent because the write's outcome is unknown" in str(err.value) and "\n" not in str(err.value)


def test_write_refused_by_a_leaderless_cluster_is_resent():
    js = Scripted([api_error("STREAM.UPDATE.S", 10009, "JetStream cluster can not handle request"), {"ok": 1}])
    assert js.request("STREAM.UPDATE.S", {"name": "S"}) == {"ok": 1}
    assert js.sent == ["STREAM.UPDATE.S"] * 2


def test_timed_out_write_that_took_effect_is_not_resent():
    js = Scripted([timeout_error(), {"config": {"name": "S", "description": "new"}}])
    reply = js.request("STREAM.UPDATE.S", {"name": "S", "description": "new"},
                       recheck=recheck_stream_config("S", {"description": "new"}))
    assert reply == {"config": {"name": "S", "description": "new"}}
    assert js.sent == ["STREAM.UPDATE.S", "STREAM.INFO.S"]
    assert "outcome unknown, re-read the state before retrying" in js.warnings[0]
    assert js.warnings[1] == "STREAM.UPDATE.S: the re-read shows the write took effect; not sent again"


def test_timed_out_write_that_did_not_take_effect_is_resent():
    js = Scripted([timeout_error(), {"config": {"name": "S", "description": "old"}}, {"ok": 1}])
    reply = js.request("STREAM.UPDATE.S", {"name": "S", "description": "new"},
                       recheck=recheck_stream_config("S", {"description": "new"}))
    assert reply == {"ok": 1}
    assert js.sent == ["STREAM.UPDATE.S", "STREAM.INFO.S", "STREAM.UPDATE.S"]


def test_recheck_reads_share_the_budget():
    class Slow(Scripted):
        def _request_once(self, api, payload, timeout):
            self.sent.append(api)
            self.now[0] += 5.0  # every try times out after 5s
            raise timeout_error()

    js = Slow([], budget=12)
    with pytest.raises(RetryBudgetExhausted) as err:
        js.request("STREAM.DELETE.S", recheck=recheck_stream_deleted("S"))
    msg = str(err.value)
    # The re-read starts its own retries inside the delete's budget: a try starts only before 12s have passed,
    # so after delete (0-5s), re-read (5-10s) and re-read (10-15s) it gives up, naming the re-read.
    assert js.sent == ["STREAM.DELETE.S", "STREAM.INFO.S", "STREAM.INFO.S"]
    assert msg.startswith("JetStream API STREAM.INFO.S at nats://127.0.0.1:1 still failing after 2 attempts in 15.0s "
                          "(retry_budget 12s); last error: timed out after 5.0s; raise retry_budget")
    assert "\n" not in msg and err.value.result == {"retry_attempts": 2}


def test_budget_exhausted_names_api_error_attempts_and_what_to_do():
    class Ticking(Scripted):
        def _request_once(self, api, payload, timeout):
            self.now[0] += 2.0
            return super()._request_once(api, payload, timeout)

    err_ = api_error("STREAM.INFO.S", 10008, "JetStream system temporarily unavailable")
    js = Ticking([err_] * 20, budget=10)
    with pytest.raises(RetryBudgetExhausted) as err:
        js.request("STREAM.INFO.S")
    msg = str(err.value)
    assert "STREAM.INFO.S" in msg and "still failing after 4 attempts" in msg and "(retry_budget 10s)" in msg
    assert "JetStream system temporarily unavailable (err_code 10008)" in msg
    assert "raise retry_budget or check that the cluster has quorum" in msg
    assert len(js.warnings) == 3


def test_no_responders_before_any_jetstream_reply_is_a_misconfiguration():
    nr = TransportError("JetStream is not enabled at x", "no_responders", "no JetStream responder at x")
    js = Scripted([nr])
    with pytest.raises(TransportError):
        js.request("INFO")
    assert js.sent == ["INFO"]
    js = Scripted([nr, {"ok": 1}])
    js._js_answered = True  # JetStream answered earlier in this run: the node is restarting
    assert js.request("INFO") == {"ok": 1}


@pytest.mark.parametrize("hang_up", [ConnectionResetError(104, "Connection reset by peer"),
                                     BrokenPipeError(32, "Broken pipe"), EOFError()])
def test_a_hang_up_after_a_mutual_tls_handshake_names_the_client_certificate(hang_up):
    # TLS 1.3: the server checks the client certificate after the handshake; the client's next read sees a reset,
    # its next write (CONNECT) a broken pipe, depending on timing. Either way the operator must hear "certificate".
    params = {"servers": ["tls://127.0.0.1:4222"], "tls_ca": "ca.pem", "tls_cert": "c.pem", "tls_key": "k.pem"}
    msg = connect_failure(hang_up, params["servers"], params)
    assert msg.startswith("mutual TLS with tls://127.0.0.1:4222 failed") and "tls_cert/tls_key" in msg, msg


def test_a_refused_connection_is_not_blamed_on_the_certificate():
    params = {"servers": ["tls://127.0.0.1:4222"], "tls_ca": "ca.pem", "tls_cert": "c.pem", "tls_key": "k.pem"}
    msg = connect_failure(ConnectionRefusedError(111, "Connection refused"), params["servers"], params)
    assert msg.startswith("cannot reach NATS at tls://127.0.0.1:4222"), msg
