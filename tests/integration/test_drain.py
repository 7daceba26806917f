"""consumer_drain through ansible-playbook against the 3-node session cluster, with a real worker thread.

Streams and consumers are created with raw JSON through nats-py (not the stream/consumer modules).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import nats
import pytest

from lab.ansible_run import run_tasks
from tests.support.jsapi import api as raw_api

MOD = "athlete_ally.nats.consumer_drain"


def api(urls, subject, body=None):
    reply = raw_api(urls, subject, body)
    assert "error" not in reply, reply
    return reply


def publish(urls, subject, count):
    async def go():
        nc = await nats.connect(list(urls))
        try:
            js = nc.jetstream()
            last = None
            for i in range(count):
                last = await js.publish(subject, b"m%d" % i)
            return last.seq
        finally:
            await nc.close()
    return asyncio.run(go())


class Worker(threading.Thread):
    """Pulls from a durable consumer and acks each message after ``delay`` seconds; stops after ``limit`` acks."""

    def __init__(self, urls, stream, consumer, delay=0.05, limit=None, slow=None, start_when=None):
        super().__init__(daemon=True)
        self.start_when = start_when  # a file whose appearance starts the work (the drain's progress_file)
        self.urls, self.stream, self.consumer = list(urls), stream, consumer
        self.delay, self.limit = delay, limit
        self.slow = slow or {}  # ack number -> delay for that message
        self.acked = 0
        self.stop = threading.Event()
        self.error = None

    def run(self):
        deadline = time.monotonic() + 60
        while self.start_when and not self.start_when.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            asyncio.run(self._work())
        except Exception as exc:  # surfaced by the test through .error
            self.error = exc

    async def _work(self):
        nc = await nats.connect(self.urls)
        try:
            sub = await nc.jetstream().pull_subscribe_bind(durable=self.consumer, stream=self.stream)
            while not self.stop.is_set() and (self.limit is None or self.acked < self.limit):
                try:
                    msgs = await sub.fetch(1, timeout=0.5)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    await asyncio.sleep(self.slow.get(self.acked + 1, self.delay))
                    await msg.ack_sync()
                    self.acked += 1
        finally:
            await nc.close()


@pytest.fixture
def setup(cluster):
    """A stream with its own subjects and a durable explicit-ack pull consumer on it."""
    stream = "DR_%s" % uuid.uuid4().hex[:8]
    prefix = stream.lower()
    api(cluster.urls, "STREAM.CREATE." + stream, {"name": stream, "subjects": [prefix + ".>"], "num_replicas": 3})
    api(cluster.urls, "CONSUMER.CREATE.%s.hrv" % stream, {"stream_name": stream, "action": "create", "config": {
        "durable_name": "hrv", "ack_policy": "explicit", "ack_wait": 30 * 10 ** 9, "max_deliver": 5,
        "filter_subject": prefix + ".hrv"}})
    workers = []
    yield stream, prefix, workers
    for w in workers:
        w.stop.set()
        w.join(10)
    api(cluster.urls, "STREAM.DELETE." + stream)


def drain_task(stream, **args):
    return [{"name": "drain", MOD: dict(stream=stream, consumer="hrv", **args)}]


def test_drain_with_worker_returns_zero_counts_and_rate(cluster, setup, tmp_path):
    stream, prefix, workers = setup
    publish(cluster.urls, prefix + ".hrv", 60)
    # ~9s of work, started by the drain's first progress line; the last message takes 3s, so nothing is pending any more
    # while one message still awaits its ack: the drain must wait for that ack too
    progress = tmp_path / "drain.log"
    worker = Worker(cluster.urls, stream, "hrv", delay=0.1, slow={60: 3.0}, start_when=progress)
    workers.append(worker)
    worker.start()
    res = run_tasks(drain_task(stream, poll_interval="0.5s", timeout="60s", progress_file=str(progress)),
                    servers=cluster.urls)
    acked_when_done = worker.acked
    assert res.rc == 0, res.stdout
    r = res.task("drain")
    assert r["changed"] is False and r["drained"] is True
    assert r["initial"]["num_pending"] + r["initial"]["num_ack_pending"] > 0
    final = r["final"]
    assert final["num_pending"] == 0 and final["num_ack_pending"] == 0 and final["num_redelivered"] == 0
    assert final["ack_floor"]["consumer_seq"] == final["delivered"]["consumer_seq"] == 60
    assert r["rate"] > 0 and r["acked"] > 0 and r["elapsed"] > 0
    assert r["polls"] >= 2  # stable over two polls
    assert acked_when_done == 60 and worker.error is None
    lines = progress.read_text().splitlines()
    assert len(lines) == r["polls"]
    assert "pending=" in lines[0] and "ack_pending=" in lines[0] and "ack_floor=" in lines[0] and "rate=" in lines[0]
    assert lines[-1].endswith("drained=yes")
    assert any("pending=0 ack_pending=1 " in line and line.endswith("drained=no") for line in lines), lines


def test_until_stream_seq_returns_with_later_messages_pending(cluster, setup):
    stream, prefix, workers = setup
    cut = publish(cluster.urls, prefix + ".hrv", 10)
    publish(cluster.urls, prefix + ".hrv", 10)  # after the cut-over point; nobody will process these
    worker = Worker(cluster.urls, stream, "hrv", delay=0.02, limit=10)
    workers.append(worker)
    worker.start()
    res = run_tasks(drain_task(stream, until_stream_seq=cut, poll_interval="0.3s", timeout="60s",
                               stall_timeout="30s"), servers=cluster.urls)
    assert res.rc == 0, res.stdout
    r = res.task("drain")
    assert r["drained"] is True and r["until_stream_seq"] == cut == 10
    assert r["final"]["ack_floor"]["stream_seq"] >= cut
    assert r["final"]["num_pending"] > 0  # not a full drain: later messages are still there


def test_until_stream_seq_on_filtered_consumer_past_its_last_match(cluster, setup):
    """The cut-over sequence is a message the consumer's filter does not match: its ack floor never reaches it."""
    stream, prefix, workers = setup
    publish(cluster.urls, prefix + ".hrv", 5)
    cut = publish(cluster.urls, prefix + ".other", 5)
    worker = Worker(cluster.urls, stream, "hrv", delay=0.01)
    workers.append(worker)
    worker.start()
    res = run_tasks(drain_task(stream, until_stream_seq=cut, poll_interval="0.3s", timeout="30s"),
                    servers=cluster.urls)
    assert res.rc == 0, res.stdout
    r = res.task("drain")
    assert r["drained"] is True and r["final"]["ack_floor"]["stream_seq"] < cut
    # Processed up to the cut is final (every message up to it is stored): one reading decides, no second poll.
    again = run_tasks(drain_task(stream, until_stream_seq=cut, poll_interval="5s", timeout="30s"), servers=cluster.urls)
    assert again.rc == 0 and again.task("drain")["drained"] is True and again.task("drain")["polls"] == 1, again.stdout


def test_stalled_consumer_fails_early_with_partial_results(cluster, setup):
    stream, prefix, _workers = setup
    publish(cluster.urls, prefix + ".hrv", 5)
    started = time.monotonic()
    res = run_tasks(drain_task(stream, poll_interval="0.3s", timeout="120s", stall_timeout="2s"),
                    servers=cluster.urls)
    took = time.monotonic() - started
    r = res.task("drain")
    assert r.get("failed") is True
    assert "stall_timeout" in r["msg"] and "stalled" in r["msg"] and "\n" not in r["msg"]
    assert took < 60  # failed early, not at the timeout
    assert r["drained"] is False and r["polls"] >= 2
    assert r["initial"]["num_pending"] == 5 and r["final"]["num_pending"] == 5
    assert r["info"]["name"] == "hrv"


def test_timeout_fails_with_partial_results(cluster, setup, tmp_path):
    stream, prefix, workers = setup
    publish(cluster.urls, prefix + ".hrv", 30)
    progress = tmp_path / "drain.log"
    worker = Worker(cluster.urls, stream, "hrv", delay=0.3, start_when=progress)  # progresses, but too slowly
    workers.append(worker)
    worker.start()
    res = run_tasks(drain_task(stream, poll_interval="0.5s", timeout="3s", stall_timeout="60s",
                               progress_file=str(progress)), servers=cluster.urls)
    r = res.task("drain")
    assert r.get("failed") is True
    assert "`timeout`" in r["msg"] and "stall_timeout" not in r["msg"] and "\n" not in r["msg"]
    assert r["drained"] is False and r["polls"] >= 2
    assert r["final"]["num_pending"] + r["final"]["num_ack_pending"] > 0
    assert 2.5 <= r["elapsed"] < 20
    assert r["initial"] is not None and "info" in r


def test_check_mode_reports_state_and_waits_for_nothing(cluster, setup):
    stream, prefix, _workers = setup
    publish(cluster.urls, prefix + ".hrv", 7)
    res = run_tasks(drain_task(stream, timeout="300s", stall_timeout="300s"), servers=cluster.urls, check=True)
    assert res.rc == 0, res.stdout
    r = res.task("drain")
    assert r["changed"] is False and r["drained"] is False
    assert r["polls"] == 1 and r["elapsed"] < 5
    assert r["initial"]["num_pending"] == 7 and r["final"]["num_pending"] == 7


def test_already_drained_consumer_and_missing_ones(cluster, setup):
    stream, _prefix, _workers = setup
    res = run_tasks(drain_task(stream, poll_interval="0.2s") + [
        {"name": "no consumer", MOD: dict(stream=stream, consumer="nope"), "ignore_errors": True},
        {"name": "no stream", MOD: dict(stream=stream + "_X", consumer="hrv"), "ignore_errors": True},
    ], servers=cluster.urls)
    r = res.task("drain")
    assert r["drained"] is True and r["polls"] == 2 and r["rate"] == 0
    missing = res.task("no consumer")
    assert missing.get("failed") is True
    assert "consumer nope not found on stream %s" % stream in missing["msg"]
    assert "stream %s_X not found" % stream in res.task("no stream")["msg"]
