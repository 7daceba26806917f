"""The soak window (module_utils/soak.py) on a fake clock: polls on schedule; with Prometheus it stops at the first
firing migration alert, naming it and its labels, and prints a status line per poll, and it cannot pass blind (no
rule group, an absent series, failed polls at the end, an alert pending at the end); without, consumer lag from
JetStream over its limit for long enough stops it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.soak import (  # noqa: E402
    Prometheus, Soak, status_line)
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


RULES = [{"name": "NatsConsumerLag", "duration": 6, "health": "ok"},
         {"name": "NormalizeDbDisconnect", "duration": 10, "health": "ok"}]
REQUIRED = [{"what": "consumer pending", "selector": 'nats_consumer_num_pending{consumer_name=~"a|b"}', "if_traffic": False},
            {"what": "handled counter", "selector": "normalize_hrv_messages_total", "if_traffic": True}]
STATUS = {"lag": "max by (stream, consumer_name) (nats_consumer_num_pending)", "lag_labels": ["stream", "consumer_name"],
          "error_rate": 'sum(rate(x{result=~"retry|dlq"}[10s])) / sum(rate(x[10s]))', "stored_per_min": "stored"}


class FakePrometheus(object):
    """Answers /api/v1/alerts from a script (one entry per poll; the last repeats), /api/v1/rules from ``groups``,
    count() queries from ``series`` (the selectors that exist), the traffic query from ``traffic``."""

    def __init__(self, script, clock, groups=None, series=None, traffic=1.0):
        self.script = list(script)
        self.clock = clock
        self.urls = []
        self.groups = [{"name": "phase2-migration", "rules": RULES}] if groups is None else groups
        self.series = [r["selector"] for r in REQUIRED] if series is None else series
        self.traffic = traffic

    def __call__(self, url):
        self.urls.append(url)
        parsed = urlparse(url)
        if parsed.path == "/api/v1/rules":
            return json.dumps({"status": "success", "data": {"groups": self.groups}}).encode()
        if parsed.path == "/api/v1/alerts":
            self.clock.t += 0.1
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            if step == "down":
                raise JetStreamError("cannot read Prometheus at http://prom: connection refused")
            return json.dumps({"status": "success", "data": {"alerts": step}}).encode()
        query = parse_qs(parsed.query)["query"][0]
        if query.startswith("count("):
            result = [{"metric": {}, "value": [0, "2"]}] if query[6:-1] in self.series else []
        elif query == "traffic":
            result = [{"metric": {}, "value": [0, str(self.traffic)]}]
        elif query == STATUS["lag"]:
            result = [{"metric": {"stream": "AA_CORE_HOT", "consumer_name": "normalize-hrv-durable"},
                       "value": [0, "3"]}]
        elif query == STATUS["error_rate"]:
            result = [{"metric": {}, "value": [0, "0.25"]}]
        else:
            result = [{"metric": {}, "value": [0, "1140"]}]
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def params(**over):
    p = dict(consumers=[CONSUMER], seconds=10, poll=2, max_pending=100, max_pending_for=5,
             alert_labels={"runbook": "phase2-migration"}, status_queries=STATUS, rule_group="phase2-migration",
             alerts=["NatsConsumerLag", "NormalizeDbDisconnect"], required_series=REQUIRED, traffic_query="traffic",
             pending_wait=900)
    p.update(over)
    return p


def with_prometheus(script, prom=None, **over):
    clock = FakeClock()
    fake = FakePrometheus(script, clock, **(prom or {}))
    lines = []
    s = Soak(None, params(**over), Prometheus("http://prom/", fake), clock=clock, sleep=clock.sleep,
             progress=lines.append)
    return s, clock, fake, lines


def test_quiet_window_polls_on_a_clock_with_a_status_line_each():
    ignored = [alert("Other", runbook="elsewhere")]
    s, clock, fake, lines = with_prometheus([ignored])
    out = s.run()
    assert [p["elapsed"] for p in out["polls"]] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert out["source"] == "prometheus" and lines == out["lines"]
    assert out["lines"][0] == "  0.0s lag %s=3 error rate 25.0%% stored 1140/min alerts none" % CONSUMER
    assert fake.urls[0] == "http://prom/api/v1/rules?type=alert"
    assert "http://prom/api/v1/alerts" in fake.urls
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
    out = s.run()  # two blind polls early, then readable again: the window goes on
    assert lines[0].startswith("  0.0s Prometheus not readable this poll: cannot read Prometheus")
    assert len(out["polls"]) == 6
    s, _clock, _fake, _lines = with_prometheus(["down"])
    with pytest.raises(JetStreamError, match=r"soak stopped at 4s: 3 reads of Prometheus failed in a row"):
        s.run()


# -- ways a soak could pass blind ---------------------------------------------------------------------------
def refused(prom, **over):
    s, _clock, fake, _lines = with_prometheus([[]], prom=prom, **over)
    with pytest.raises(JetStreamError) as err:
        s.run()
    assert not any(u.endswith("/api/v1/alerts") for u in fake.urls), "the window started"
    msg = str(err.value)
    assert msg.startswith("soak refused before the window: ") and "\n" not in msg
    return msg


def test_a_prometheus_without_the_rule_group_refuses_the_window():
    msg = refused({"groups": [{"name": "node-exporter", "rules": []}]})
    assert "has no rule group 'phase2-migration' loaded (/api/v1/rules: node-exporter)" in msg
    assert "playbooks/monitoring_rules.yml" in msg


def test_a_rule_group_without_an_expected_alert_or_with_a_broken_rule_refuses():
    msg = refused({"groups": [{"name": "phase2-migration", "rules": RULES[:1]}]})
    assert "lacks NormalizeDbDisconnect" in msg
    broken = [dict(RULES[0]), dict(RULES[1], health="err", lastError="bad expr")]
    assert "NormalizeDbDisconnect (bad expr)" in refused({"groups": [{"name": "phase2-migration", "rules": broken}]})


def test_a_series_the_rules_read_that_does_not_exist_refuses_the_window():
    msg = refused({"series": [REQUIRED[1]["selector"]]})
    assert 'no series nats_consumer_num_pending{consumer_name=~"a|b"} (consumer pending)' in msg
    # the service's counters (labelled: no series before the first message) are required once there was traffic
    assert "normalize_hrv_messages_total (handled counter)" in refused({"series": [REQUIRED[0]["selector"]]})
    s, _clock, _fake, _lines = with_prometheus([[]], prom={"series": [REQUIRED[0]["selector"]], "traffic": 0})
    assert len(s.run()["polls"]) == 6


def test_a_series_that_appears_within_a_few_polls_lets_the_window_start():
    # phase 0 creates the DLQ stream just before its window: its series reaches Prometheus a scrape later
    s, clock, fake, _lines = with_prometheus([[]], prom={"series": [REQUIRED[1]["selector"]]})
    late = REQUIRED[0]["selector"]
    real_sleep = s.sleep

    def sleep(seconds):
        real_sleep(seconds)
        if clock.t >= 4 and late not in fake.series:
            fake.series.append(late)
    s.sleep = sleep
    out = s.run()
    assert len(out["polls"]) == 6 and clock.t >= 4 + 10


def test_a_failed_poll_in_the_last_part_of_the_window_fails_it():
    s, _clock, _fake, _lines = with_prometheus([[], [], [], [], "down"])
    with pytest.raises(JetStreamError, match=r"^soak failed at 10s: Prometheus was not readable at 8s, 10s in the "
                                             r"window's last 6s .* the end of the window was not watched"):
        s.run()


def test_an_alert_pending_at_the_end_is_waited_on_until_it_fires():
    pending = alert("NatsConsumerLag", state="pending", runbook="phase2-migration", severity="P2")
    firing = alert("NatsConsumerLag", runbook="phase2-migration", severity="P2")
    s, _clock, _fake, lines = with_prometheus([[]] * 5 + [[pending], [pending], [firing]])
    with pytest.raises(JetStreamError, match=r"^soak stopped at 14s: alert NatsConsumerLag"):
        s.run()
    assert "(pending NatsConsumerLag)" in lines[5]


def test_an_alert_pending_at_the_end_that_resolves_passes_and_one_that_stays_pending_fails():
    pending = alert("NatsConsumerLag", state="pending", runbook="phase2-migration")
    s, _clock, _fake, _lines = with_prometheus([[]] * 5 + [[pending], []])
    assert len(s.run()["polls"]) == 7
    s, clock, _fake, _lines = with_prometheus([[]] * 5 + [[pending]])
    with pytest.raises(JetStreamError, match=r"alert NatsConsumerLag .* still pending after waiting 10s past the "
                                             r"window; it neither fired nor resolved"):
        s.run()
    assert clock.t <= 10.1 + 6 + 2 * 2 + 1  # bounded: the rule's for: (6 s) plus two polls


def test_status_line_without_data_says_so():
    row = dict(elapsed=2.0, lag={}, error_rate=None, stored_per_min=None, firing=[])
    assert status_line(row) == "  2.0s lag - error rate - stored - alerts none"


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
