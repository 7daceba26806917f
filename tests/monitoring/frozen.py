"""A migration consumer's backlog on the real lab, frozen and then fed (tests/monitoring lab modules): the lag rule
must stay quiet on a backlog nobody reads or feeds (the superseded legacy consumer's case after a cut-over) and fire on
one that grows, whichever exporter's names the lab speaks. Only the exporter's standard series are involved."""

from __future__ import annotations

import asyncio
import time

from tests.support.polling import wait_for
from tests.support.prometheus_api import prom

STREAM, SUBJECT = "MON_FROZEN", "monfrozen.events"
CONSUMER = "normalize-oura"  # a name the lab's rules watch (a migration consumer), on a scratch stream


def publish(lab, count):
    import nats

    async def run():
        nc = await nats.connect(lab.env["NATS_URL"].split(","), user=lab.env["NATS_USER"],
                                password=lab.env["NATS_PASSWORD"])
        try:
            js = nc.jetstream()
            for i in range(count):
                await js.publish(SUBJECT, b"m%d" % i)
        finally:
            await nc.close()
    asyncio.run(run())


def lag_alert(lab, stream_label, state):
    return [a for a in prom(lab, "/api/v1/alerts")["alerts"]
            if a["labels"].get("alertname") == "NatsConsumerLag" and a["labels"].get(stream_label) == STREAM
            and a["state"] == state]


def frozen_quiet_then_growing_fires(lab, pending_metric, stream_label, threshold=100, quiet_s=15.0):
    """Returns (seconds the frozen backlog stayed quiet, seconds until the growing one fired)."""
    config = {"name": STREAM, "subjects": ["monfrozen.>"], "storage": "memory", "num_replicas": 1}
    created = lab.js("STREAM.CREATE." + STREAM, config)
    assert "error" not in created, created
    try:
        made = lab.js("CONSUMER.CREATE.%s.%s" % (STREAM, CONSUMER), {"stream_name": STREAM, "config": {
            "durable_name": CONSUMER, "ack_policy": "explicit", "filter_subject": SUBJECT}})
        assert "error" not in made, made
        publish(lab, threshold + 50)
        selector = '%s{%s="%s",consumer_name="%s"}' % (pending_metric, stream_label, STREAM, CONSUMER)

        def pending():
            found = prom(lab, "/api/v1/query", query=selector)["result"]
            return float(found[0]["value"][1]) if found else None
        assert wait_for(lambda: pending() == threshold + 50, 30, interval=0.25), pending()
        # frozen: over the threshold, read and fed by nobody - quiet at every look through for: + window and more
        started = time.monotonic()
        while time.monotonic() - started < quiet_s:
            assert not lag_alert(lab, stream_label, "firing"), lag_alert(lab, stream_label, "firing")
            time.sleep(0.5)
        # fed: the backlog grows - the same rule fires
        fed_at = time.monotonic()
        deadline = fed_at + 40
        while time.monotonic() < deadline and not lag_alert(lab, stream_label, "firing"):
            publish(lab, 2)
            time.sleep(0.5)
        assert lag_alert(lab, stream_label, "firing"), "NatsConsumerLag did not fire on a growing backlog"
        return quiet_s, time.monotonic() - fed_at
    finally:
        lab.js("STREAM.DELETE." + STREAM)
        # the next test's soak must not see this test's alert
        wait_for(lambda: not lag_alert(lab, stream_label, "firing"), 30, interval=0.5)
