"""The soak window (module_utils/soak.py) on a fake clock: polls on schedule; with Prometheus it stops at the first
firing migration alert, naming it and its labels, and prints a status line per poll; without, consumer lag from
JetStream over its limit for long enough stops it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils.client import JetStreamError  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.soak import (  # noqa: E402
    Prometheus, Soak, lag_query, status_line)
from tests.support.fake_clock import FakeClock  # noqa: E402

CONSUMER = "AA_CORE_HOT/normalize-hrv-durable"


class FakeJs(object):
    def __init__(self, pending, clock):
        self.pending = list(pending)
        self.clock = clock

    def consumer_info(self, stream, name):
        self.clock.t += 0.3  # a read takes time
        value = self.pending.pop(0) if len(self.pending) > 1 else self.pending[0]
        if value == "timeout":
            raise JetStreamError("request timed out")
        return {"num_pending": value, "num_ack_pending": 0}


def alert(name, state="firing", **labels):
    return {"labels": dict(labels, alertname=name), "state": state, "activeAt": "2026-11-29T18:00:00Z",
            "annotations": {"summary": "summary of %s" % name}}


class FakePrometheus(object):
    """Answers /api/v1/alerts from a script (one entry per poll; the last repeats) and the status queries."""

    def __init__(self, script, clock):
        self.script = list(script)
        self.clock = clock
        self.urls = []

    def __call__(self, url):
        self.urls.append(url)
        parsed = urlparse(url)
        if parsed.path == "/api/v1/alerts":
            self.clock.t += 0.1
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            if step == "down":
                raise JetStreamError("cannot read Prometheus at http://prom: connection refused")
            return json.dumps({"status": "success", "data": {"alerts": step}}).encode()
        query = parse_qs(parsed.query)["query"][0]
        if "nats_consumer_num_pending" in query:
            result = [{"metric": {"stream": "AA_CORE_HOT", "consumer_name": "normalize-hrv-durable"},
                       "value": [0, "3"]}]
        elif "result=~" in query:
            result = [{"metric": {}, "value": [0, "0.25"]}]
        else:
            result = [{"metric": {}, "value": [0, "1140"]}]
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def params(**over):
    p = dict(consumers=[CONSUMER], seconds=10, poll=2, max_pending=100, max_pending_for=5,
             alert_labels={"runbook": "phase2-migration"}, rate_window="10s")
    p.update(over)
    return p


def with_prometheus(script, **over):
    clock = FakeClock()
    fake = FakePrometheus(script, clock)
    lines = []
    s = Soak(None, params(**over), Prometheus("http://prom/", fake), clock=clock, sleep=clock.sleep,
             progress=lines.append)
    return s, clock, fake, lines


def test_quiet_window_polls_on_a_clock_with_a_status_line_each():
    ignored = [alert("Other", runbook="elsewhere"), alert("NatsConsumerLag", state="pending", runbook="phase2-migration")]
    s, clock, fake, lines = with_prometheus([ignored])
    out = s.run()
    assert [p["elapsed"] for p in out["polls"]] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert out["source"] == "prometheus" and lines == out["lines"]
    assert out["lines"][0] == "  0.0s lag %s=3 error rate 25.0%% inserts 1140/min alerts none" % CONSUMER
    assert fake.urls[0] == "http://prom/api/v1/alerts"
    assert clock.t == pytest.approx(10.1)


def test_first_firing_migration_alert_stops_at_that_poll_naming_it_and_its_labels():
    firing = alert("NormalizeDbDisconnect", runbook="phase2-migration", severity="P1")
    s, _clock, _fake, lines = with_prometheus([[], [], [firing]])
    with pytest.raises(JetStreamError) as err:
        s.run()
    msg = str(err.value)
    assert msg.startswith("soak stopped at 4s: alert NormalizeDbDisconnect {runbook=phase2-migration, severity=P1}")
    assert "summary of NormalizeDbDisconnect" in msg and "consider rollback" in msg and "\n" not in msg
    assert len(err.value.result["polls"]) == 3 and err.value.result["alerts"] == [firing]
    assert lines[-1].endswith("alerts NormalizeDbDisconnect")


def test_an_alert_already_firing_stops_the_first_poll():
    s, _clock, _fake, _lines = with_prometheus([[alert("NatsStreamDown", runbook="phase2-migration")]])
    with pytest.raises(JetStreamError, match=r"^soak stopped at 0s: alert NatsStreamDown"):
        s.run()


def test_prometheus_unreadable_is_unknown_for_two_polls_and_fails_the_third():
    s, _clock, _fake, lines = with_prometheus(["down", "down", []])
    out = s.run()  # two blind polls, then readable again: the window goes on
    assert lines[0].startswith("  0.0s Prometheus not readable this poll: cannot read Prometheus")
    assert len(out["polls"]) == 6
    s, _clock, _fake, _lines = with_prometheus(["down"])
    with pytest.raises(JetStreamError, match=r"soak stopped at 4s: 3 reads of Prometheus failed in a row"):
        s.run()


def test_lag_query_names_each_watched_consumer_or_all():
    assert lag_query([CONSUMER]) == (
        'max by (stream, consumer_name) '
        '(nats_consumer_num_pending{stream="AA_CORE_HOT",consumer_name="normalize-hrv-durable"})')
    assert lag_query([]) == "max by (stream, consumer_name) (nats_consumer_num_pending)"
    with pytest.raises(JetStreamError, match="consumers entries are STREAM/durable, got 'no-slash'"):
        lag_query(["no-slash"])


def test_status_line_without_data_says_so():
    row = dict(elapsed=2.0, lag={}, error_rate=None, inserts_per_min=None, firing=[])
    assert status_line(row) == "  2.0s lag - error rate - inserts - alerts none"


# -- without Prometheus: lag from JetStream ----------------------------------------------------------------
def from_jetstream(pending, **over):
    clock = FakeClock()
    return Soak(FakeJs(pending, clock), params(**over), None, clock=clock, sleep=clock.sleep), clock


def test_jetstream_window_polls_on_a_clock():
    s, clock = from_jetstream([0])
    out = s.run()
    assert [p["elapsed"] for p in out["polls"]] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert out["source"] == "jetstream" and out["lines"][0] == "  0.0s lag %s=0" % CONSUMER
    assert clock.t == pytest.approx(10.3)


def test_lag_over_the_limit_for_long_enough_stops_and_names_the_consumer():
    s, _clock = from_jetstream([50, 150, 150, 150, 150, 150])
    with pytest.raises(JetStreamError, match=r"alert consumer lag - AA_CORE_HOT/normalize-hrv-durable has 150"):
        s.run()
    assert len(s.polls) == 5  # lag since 2 s, limit 5 s: the poll at 8 s stops it


def test_lag_that_recovers_is_no_alert_and_an_unreadable_poll_is_unknown():
    s, _clock = from_jetstream([150, 150, "timeout", 0, 150, 0])
    out = s.run()
    assert [p["lag"][CONSUMER] for p in out["polls"]][:4] == [150, 150, None, 0]
