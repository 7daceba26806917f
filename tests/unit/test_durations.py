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
