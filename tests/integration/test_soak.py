"""migration_soak through ansible-playbook on the 3-node cluster: a quiet window passes with a status line per poll;
a consumer that stays behind stops it within its limit, naming the alert, the consumer and its backlog."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from lab.ansible_run import run_tasks
from tests.support.jsapi import api


@pytest.fixture
def backlog(cluster, request):
    """A stream whose consumer has 5 messages nobody reads."""
    name = "SOAK_%s" % request.node.name[-12:].upper().replace("[", "_").replace("]", "")
    subject = name.lower() + ".events"
    api(cluster.url, "STREAM.CREATE." + name, {"name": name, "subjects": [subject], "num_replicas": 3})
    api(cluster.url, "CONSUMER.CREATE.%s.worker" % name, {"stream_name": name, "config": {
        "durable_name": "worker", "ack_policy": "explicit"}})

    async def publish():
        nc = await nats.connect(cluster.url.split(","))
        try:
            for i in range(5):
                await nc.request(subject, b"m%d" % i, timeout=5)
        finally:
            await nc.close()
    asyncio.run(publish())
    yield name
    api(cluster.url, "STREAM.DELETE." + name)


def soak(cluster, **args):
    task = {"name": "soak", "athlete_ally.nats.migration_soak": args, "register": "out"}
    return run_tasks([task], servers=cluster.url)


def test_quiet_window_passes_with_a_line_per_poll(cluster, backlog):
    started = time.monotonic()
    res = soak(cluster, consumers=["%s/worker" % backlog], seconds="3s", poll=1, max_pending=10, max_pending_for=2)
    assert res.rc == 0, res.stdout
    out = res.task("soak")
    assert out["changed"] is False and len(out["polls"]) == 4, out
    assert all(p["lag"]["%s/worker" % backlog] == 5 for p in out["polls"])
    assert out["lines"][0] == "  0.0s lag %s/worker=5" % backlog and out["source"] == "jetstream"
    assert time.monotonic() - started >= 3


def test_lagging_consumer_stops_the_soak_naming_the_alert(cluster, backlog):
    res = soak(cluster, consumers=["%s/worker" % backlog], seconds="1m", poll="500ms", max_pending=2,
               max_pending_for="1s")
    assert res.rc != 0
    out = res.task("soak")
    assert "alert consumer lag - %s/worker has 5 pending, over 2" % backlog in out["msg"], out
    assert "\n" not in out["msg"] and out["polls"] and len(out["polls"]) < 10


def test_bad_consumer_entry_is_one_line(cluster):
    res = soak(cluster, consumers=["no-slash"], seconds=1)
    assert res.rc != 0 and "consumers entries are STREAM/durable, got 'no-slash'" in res.task("soak")["msg"]
