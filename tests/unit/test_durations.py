"""durations: what operators write ("48h", "14d", "2m", 90) <-> what the server stores (ns)."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.athlete_ally.nats.plugins.filter.durations import FilterModule  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils import durations  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError  # noqa: E402

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


# -- the task-option readers: a failure is a JetStreamError naming the option (the task's one line) ----------------
def test_option_seconds_takes_the_default_when_unset_or_empty():
    assert durations.option_seconds(None, "request_timeout", 5) == 5.0
    assert durations.option_seconds("", "request_timeout", 5) == 5.0
    assert durations.option_seconds(None, "stall_timeout") is None
    assert durations.option_seconds("2m", "request_timeout", 5) == 120.0


def test_option_readers_name_the_option():
    with pytest.raises(JetStreamError, match="^retry_budget: cannot read 'soon'"):
        durations.option_seconds("soon", "retry_budget", 30)
    with pytest.raises(JetStreamError, match="^consumer_limits.inactive_threshold: cannot read"):
        durations.option_nanos("2x", "consumer_limits.inactive_threshold")
    assert durations.option_nanos(None, "max_age") is None
    assert durations.option_nanos("14d", "max_age") == 14 * 86400 * S


@pytest.mark.parametrize("value, allow_zero, seconds", [("300s", True, 300.0), (0, True, 0.0), ("250ms", False, 0.25)])
def test_wait_seconds_reads_a_wait(value, allow_zero, seconds):
    assert durations.wait_seconds(value, "timeout", allow_zero=allow_zero) == seconds


@pytest.mark.parametrize("value, allow_zero", [(None, True), (-1, True), (0, False), ("0s", False)])
def test_wait_seconds_refuses_what_is_no_wait(value, allow_zero):
    with pytest.raises(JetStreamError, match="^stall_timeout must be a positive duration, got "):
        durations.wait_seconds(value, "stall_timeout", allow_zero=allow_zero)


@pytest.mark.parametrize("seconds, text", [(30.0, "30"), (0.25, "0.25"), (1.005, "1"), (90, "90"), (1.5, "1.5")])
def test_fmt_seconds_writes_no_trailing_zeros(seconds, text):
    assert durations.fmt_seconds(seconds) == text


@pytest.mark.parametrize("seconds, text", [(-3, "0s"), (0, "0s"), (119.9, "119s"), (120, "2m"), (7199, "119m"),
                                           (7200, "2.0h"), (86400, "24.0h")])
def test_ago_is_coarse_and_never_negative(seconds, text):
    assert durations.ago(seconds) == text


def test_the_filters_are_the_module_utils_functions():
    # plugins/filter/durations.py adds nothing of its own: what a playbook compares is what a module computes.
    filters = FilterModule().filters()
    assert filters["humanize_nanos"] is durations.humanize
    assert filters["to_nanos"]("2m") == durations.to_nanos("2m")
    with pytest.raises(AnsibleFilterError, match="cannot read '2x' as a duration"):
        filters["to_nanos"]("2x")


# -- backup age (backup_age.yml asserts this decision) ----------------------------------------------------------
NOW = 1_800_000_000.0


@pytest.mark.parametrize("when, ok, hours", [
    (NOW - 5 * 3600, True, 5.0),
    (NOW - 7 * 3600, False, 7.0),
    (NOW - 6 * 3600, False, 6.0),        # exactly max_age is too old: "newer than 6 hours"
    (str(NOW - 3600), True, 1.0),        # stat's mtime may come back as a string from a template
])
def test_age_check_epoch(when, ok, hours):
    got = durations.age_check(when, "6h", NOW)
    assert got["ok"] is ok and got["found"] is True
    assert got["age_hours"] == pytest.approx(hours, abs=0.01)
    assert got["max_age_seconds"] == 6 * 3600


@pytest.mark.parametrize("when, ok, hours", [
    ("2027-01-15T07:00:00.123000+00:00", True, 1.0),   # an RDS snapshot_create_time
    ("2027-01-15T01:30:00Z", False, 6.5),
    ("2027-01-15T03:00:00", True, 5.0),                # no zone: UTC, as the AWS APIs answer
])
def test_age_check_iso_times(when, ok, hours):
    now = datetime.datetime(2027, 1, 15, 8, 0, 0, tzinfo=datetime.timezone.utc).timestamp()
    got = durations.age_check(when, "6h", now)
    assert got["ok"] is ok
    assert got["age_hours"] == pytest.approx(hours, abs=0.01)


@pytest.mark.parametrize("when", [0, None, ""])
def test_age_check_nothing_found_is_never_young_enough(when):
    got = durations.age_check(when, "6h", NOW)
    assert got == dict(ok=False, found=False, age_seconds=None, age_hours=None, max_age_seconds=21600)


def test_age_check_filter_names_an_unreadable_time():
    with pytest.raises(AnsibleFilterError, match="cannot read 'yesterday' as a time"):
        FilterModule().filters()["age_check"]("yesterday", "6h", NOW)
    assert FilterModule().filters()["age_check"](NOW - 60, "1h", NOW)["ok"] is True
