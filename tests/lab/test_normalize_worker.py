"""normalize-service's worker loop against a scripted JetStream (no lab needed): bind rounds never fall past a
candidate that did not answer, a transient loss re-binds to the same stream, no exception ends the worker, a
stalled subscription or a hung fetch is noticed."""

from __future__ import annotations

import asyncio
import logging
import sys
import types

import pytest
from nats import errors as nats_errors
from nats.js import errors as js_errors

from lab.ansible_run import REPO

sys.path.insert(0, str(REPO))
from lab.services import normalize  # noqa: E402

pytestmark = pytest.mark.timeout(60)

DURABLE = "normalize-oura"
CANDIDATES = ["AA_CORE_HOT", "AA_VENDOR_HOT", "ATHLETE_ALLY_EVENTS"]


def not_found(err_code=10014):
    return js_errors.NotFoundError(code=404, err_code=err_code, description="not found")


def info(num_pending=0, num_ack_pending=0):
    return types.SimpleNamespace(config=types.SimpleNamespace(max_deliver=5, max_ack_pending=1000),
                                 num_pending=num_pending, num_ack_pending=num_ack_pending)


class FakeSub(object):
    def __init__(self, js, stream):
        self.js = js
        self.stream = stream
        self.unsubscribed = False

    async def fetch(self, batch, timeout):
        action = self.js.fetches.pop(0) if self.js.fetches else nats_errors.TimeoutError()
        if isinstance(action, BaseException):
            raise action
        if action == "hang":
            await asyncio.sleep(3600)
        return action

    async def unsubscribe(self):
        self.unsubscribed = True


class FakeJS(object):
    """consumer_info answers come from ``answers[stream]`` (a list, consumed in order; the last one repeats)."""

    def __init__(self, answers):
        self.answers = answers
        self.fetches = []
        self.binds = []
        self.published = []

    async def consumer_info(self, stream, durable, timeout=None):
        queue = self.answers.get(stream) or [not_found(10059)]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def pull_subscribe_bind(self, durable, stream):
        self.binds.append(stream)
        return FakeSub(self, stream)


class FakeMsg(object):
    def __init__(self, data=b'{"eventId": "e1"}', ack_error=None):
        self.data = data
        self.subject = "vendor.oura.webhook.received"
        self.headers = None
        self.metadata = types.SimpleNamespace(num_delivered=1, sequence=types.SimpleNamespace(stream=7))
        self.ack_error = ack_error
        self.acked = self.naked = 0

    async def ack(self):
        self.acked += 1
        if self.ack_error:
            raise self.ack_error

    async def nak(self, delay=None):
        self.naked += 1


def make_worker(answers, mode="multi", stored=None):
    svc = types.SimpleNamespace(
        log=logging.getLogger("test-normalize"), js=FakeJS(answers), candidates=list(CANDIDATES), mode=mode,
        stopping=False, api_timeout=1, bind_backoff_min=0.01, bind_backoff_max=0.02, stall_s=0.05,
        fetch_guard=0.2, database_url="postgresql://unused", db_retry_base=2, db_retry_max=16, error_retry=0.2)
    stored = stored if stored is not None else []
    return normalize.Worker(svc, DURABLE, lambda _db, event: stored.append(event["eventId"]), False), svc.js


def run(coro):
    return asyncio.run(coro)


def test_unanswered_candidate_is_waited_for_not_skipped():
    worker, js = make_worker({"AA_CORE_HOT": [not_found(10059)],
                              "AA_VENDOR_HOT": [nats_errors.TimeoutError(), info()],
                              "ATHLETE_ALLY_EVENTS": [info()]})

    async def go():
        await worker.step()  # AA_VENDOR_HOT times out: no binding at all, certainly not the legacy stream
        assert worker.stream is None and js.binds == []
        await worker.step()
        assert worker.stream == "AA_VENDOR_HOT" and js.binds == ["AA_VENDOR_HOT"]
    run(go())


def test_candidates_that_answer_not_found_are_skipped():
    worker, _js = make_worker({"AA_CORE_HOT": [not_found(10059)], "AA_VENDOR_HOT": [not_found(10014)],
                               "ATHLETE_ALLY_EVENTS": [info()]})
    run(worker.step())
    assert worker.stream == "ATHLETE_ALLY_EVENTS"


def test_transient_loss_rebinds_to_the_same_stream_until_it_is_gone():
    worker, js = make_worker({"AA_CORE_HOT": [not_found(10059)], "AA_VENDOR_HOT": [info()],
                              "ATHLETE_ALLY_EVENTS": [info()]})

    async def go():
        await worker.step()
        assert worker.stream == "AA_VENDOR_HOT"
        # the leader died: no responders on the pull; meanwhile AA_CORE_HOT got the durable (higher priority)
        js.fetches.append(js_errors.ServiceUnavailableError())
        js.answers["AA_CORE_HOT"] = [info()]
        js.answers["AA_VENDOR_HOT"] = [nats_errors.TimeoutError(), nats_errors.TimeoutError(), info()]
        await worker.step()  # loses the consumer
        assert worker.stream is None and worker.sticky == "AA_VENDOR_HOT"
        for _round in range(3):
            await worker.step()
        assert js.binds == ["AA_VENDOR_HOT", "AA_VENDOR_HOT"] and worker.stream == "AA_VENDOR_HOT"
        # deleted for real (rollback/phase 3): a full round again
        js.fetches.append(js_errors.ServiceUnavailableError())
        js.answers["AA_VENDOR_HOT"] = [not_found(10059)]
        await worker.step()
        await worker.step()
        assert worker.stream == "AA_CORE_HOT" and worker.sticky is None
    run(go())


def test_no_exception_ends_the_worker():
    stored = []
    worker, js = make_worker({"AA_CORE_HOT": [info()]}, stored=stored)
    bad_ack = FakeMsg(ack_error=nats_errors.ConnectionClosedError())
    good = FakeMsg(data=b'{"eventId": "e2"}')
    js.fetches += [[bad_ack], RuntimeError("client internals"), [good]]
    calls = {"n": 0}
    real_step = worker.step

    async def step():
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyError("a bug outside fetch")  # escapes step(): run() must survive it
        if calls["n"] > 12:
            worker.svc.stopping = True
        await real_step()

    worker.step = step

    async def go():
        await asyncio.wait_for(worker.run(), 10)
    run(go())
    assert stored == ["e1", "e2"] and good.acked == 1 and bad_ack.acked == 1


def test_stalled_subscription_is_replaced():
    worker, js = make_worker({"AA_CORE_HOT": [info(num_pending=5)]})

    async def go():
        await worker.step()
        assert js.binds == ["AA_CORE_HOT"]
        for _round in range(10):  # fetches time out while the consumer has pending messages
            await worker.step()
            await asyncio.sleep(0.02)
        assert js.binds.count("AA_CORE_HOT") >= 2
    run(go())


def test_stall_check_leaves_a_consumer_at_max_ack_pending_alone():
    worker, js = make_worker({"AA_CORE_HOT": [info(num_pending=5, num_ack_pending=1000)]})

    async def go():
        for _round in range(8):
            await worker.step()
            await asyncio.sleep(0.02)
        assert js.binds == ["AA_CORE_HOT"]
    run(go())


def test_a_hung_fetch_is_abandoned():
    worker, js = make_worker({"AA_CORE_HOT": [info()]})
    js.fetches += ["hang", [FakeMsg()]]

    async def go():
        await worker.step()  # binds, then the fetch hangs: abandoned after fetch_guard
        await asyncio.wait_for(worker.step(), 2)
    run(go())
