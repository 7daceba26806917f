"""durations: what operators write ("48h", "14d", "2m", 90) <-> what the server stores (ns)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations  # noqa: E402

S = 10 ** 9


@pytest.mark.parametrize("value, nanos", [
    ("48h", 48 * 3600 * S),
    ("14d", 14 * 86400 * S),
    ("2m", 120 * S),
    ("1w", 7 * 86400 * S),
    ("1h30m", 5400 * S),
    ("500ms", 500 * 10 ** 6),
    ("250us", 250 * 10 ** 3),
    ("7ns", 7),
    ("1.5s", 1500 * 10 ** 6),
    (" 2M ", 120 * S),
    (90, 90 * S),
    (0.5, 500 * 10 ** 6),
    ("90", 90 * S),
    ("0", 0),
    (0, 0),
])
def test_to_nanos_reads_units_and_seconds(value, nanos):
    assert durations.to_nanos(value) == nanos


def test_to_nanos_none_passes_through():
    assert durations.to_nanos(None) is None


@pytest.mark.parametrize("value", ["14 fortnights", "2x", "h", "", "1h-5m", "m2", "1d garbage", [1], True, False])
def test_to_nanos_rejects_unknown_input_with_field_name(value):
    with pytest.raises((ValueError, TypeError)) as err:
        durations.to_nanos(value, "max_age")
    if isinstance(err.value, ValueError):
        assert "max_age" in str(err.value)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("nanos, text", [
    (0, "0"),
    (None, "0"),
    (120 * S, "2m"),
    (48 * 3600 * S, "2d"),
    (14 * 86400 * S, "2w"),
    (90 * S, "90s"),
    (1500 * 10 ** 6, "1500ms"),
    (7, "7ns"),
])
def test_humanize_picks_the_largest_exact_unit(nanos, text):
    assert durations.humanize(nanos) == text


@pytest.mark.parametrize("text", ["48h", "14d", "2m", "500ms", "90s", "1w"])
def test_humanize_round_trips(text):
    ns = durations.to_nanos(text)
    assert durations.to_nanos(durations.humanize(ns)) == ns


@pytest.mark.parametrize("value, seconds", [
    (60, 60.0), (60.0, 60.0), (0.25, 0.25), ("60", 60.0), ("2m", 120.0), ("1h30m", 5400.0), ("250ms", 0.25),
])
def test_to_seconds_reads_what_to_nanos_reads(value, seconds):
    assert durations.to_seconds(value, "timeout") == seconds
    assert isinstance(durations.to_seconds(value), float)


def test_to_seconds_none_and_errors():
    assert durations.to_seconds(None) is None
    with pytest.raises(ValueError, match="catchup_timeout"):
        durations.to_seconds("soon", "catchup_timeout")


def test_duration_option_is_raw_and_keeps_its_arguments():
    assert durations.duration_option() == {"type": "raw"}
    assert durations.duration_option(default="300s") == {"type": "raw", "default": "300s"}
    assert durations.duration_option(type="str", default=60) == {"type": "raw", "default": 60}


class FakeModule(object):
    def __init__(self, **params):
        self.params = params
        self.failed = None

    def fail_json(self, msg):
        self.failed = msg
        raise SystemExit(1)


def test_params_to_seconds_converts_in_place():
    module = FakeModule(timeout="2m", retry_delay=0.25, catchup_timeout=60, other="x", unset=None)
    durations.params_to_seconds(module, "timeout", "retry_delay", "catchup_timeout", "unset")
    assert module.params == dict(timeout=120.0, retry_delay=0.25, catchup_timeout=60.0, other="x", unset=None)


def test_params_to_seconds_fails_the_task_naming_the_option():
    module = FakeModule(timeout="2 fortnights")
    with pytest.raises(SystemExit):
        durations.params_to_seconds(module, "timeout")
    assert module.failed.startswith("timeout: cannot read")
