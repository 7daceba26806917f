"""The soak window's rules (module_utils/soak.py) on a fake clock: polls on schedule, alerts named at once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils.client import JetStreamError  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.soak import Soak, counter_totals  # noqa: E402

METRICS = """# HELP normalize_hrv_messages_total HRV messages
normalize_hrv_messages_total{result="success",stream="AA_CORE_HOT"} %d
normalize_hrv_messages_total{result="retry",stream="AA_CORE_HOT"} %d
normalize_hrv_messages_total{result="dlq",stream="ATHLETE_ALLY_EVENTS"} 1.0
normalize_other_total{result="retry"} 99
"""


class Clock(object):
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


class FakeJs(object):
    def __init__(self, pending):
        self.pending = list(pending)

    def consumer_info(self, stream, name):
        self.clock.t += 0.3  # a read takes time
        value = self.pending.pop(0) if len(self.pending) > 1 else self.pending[0]
        if value == "timeout":
            raise JetStreamError("request timed out")
        return {"num_pending": value, "num_ack_pending": 0}


def soak(pending, metrics, **params):
    clock = Clock()
    js = FakeJs(pending)
    js.clock = clock
    p = dict(consumers=["AA_CORE_HOT/normalize-hrv-durable"], metric="normalize_hrv_messages_total",
             error_results=["retry", "dlq"], seconds=10, poll=2, max_pending=100, max_pending_for=5,
             max_error_rate=0.1)
    p.update(params)
    feed = iter(metrics)
    return Soak(js, p, lambda: next(feed), clock=clock, sleep=clock.sleep), clock


def test_counter_totals_sum_the_metric_only():
    assert counter_totals(METRICS % (10, 2), "normalize_hrv_messages_total", ["retry", "dlq"]) == (3.0, 13.0)
    assert counter_totals("", "x", []) == (0.0, 0.0)


def test_window_polls_on_a_clock_and_ends_on_time():
    s, clock = soak([0], [METRICS % (10 * i, 0) for i in range(1, 20)])
    out = s.run()
    assert [p["elapsed"] for p in out["polls"]] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert out["polls"][-1]["processed"] == 50 and out["polls"][-1]["errors"] == 0
    assert clock.t == pytest.approx(10.3)


def test_lag_over_the_limit_for_long_enough_stops_and_names_the_consumer():
    s, _clock = soak([50, 150, 150, 150, 150, 150], [METRICS % (1, 0)] * 10)
    with pytest.raises(JetStreamError, match=r"alert consumer lag - AA_CORE_HOT/normalize-hrv-durable has 150"):
        s.run()
    assert len(s.polls) == 5  # lag since 2 s, limit 5 s: the poll at 8 s stops it


def test_lag_that_recovers_is_no_alert_and_an_unreadable_poll_is_unknown():
    s, _clock = soak([150, 150, "timeout", 0, 150, 0], [METRICS % (1, 0)] * 10)
    out = s.run()
    assert [p["pending"]["AA_CORE_HOT/normalize-hrv-durable"] for p in out["polls"]][:4] == [150, 150, None, 0]


def test_error_rate_over_the_window_stops():
    s, _clock = soak([0], [METRICS % (10, 0), METRICS % (15, 5)])
    with pytest.raises(JetStreamError, match=r"alert high error rate - 5.0 of 10.0 messages failed \(50.0%"):
        s.run()
