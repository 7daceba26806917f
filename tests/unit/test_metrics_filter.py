"""plugins/filter/metrics.py: the runbook's metric greps as filters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.athlete_ally.nats.plugins.filter.metrics import prom_error_ratio, prom_sum  # noqa: E402

TEXT = """# HELP normalize_hrv_messages_total HRV messages handled by normalize
# TYPE normalize_hrv_messages_total counter
normalize_hrv_messages_total{result="success",stream="AA_CORE_HOT"} 40.0
normalize_hrv_messages_total{result="success",stream="ATHLETE_ALLY_EVENTS"} 7.0
normalize_hrv_messages_total{result="retry",stream="AA_CORE_HOT"} 1.0
normalize_hrv_messages_created{result="success",stream="AA_CORE_HOT"} 1.7e9
normalize_messages_total{result="processed",subject="vendor.oura.webhook.received",stream="AA_VENDOR_HOT"} 3.0
"""


def test_sum_filters_by_every_label():
    assert prom_sum(TEXT, "normalize_hrv_messages_total", {"result": "success", "stream": "AA_CORE_HOT"}) == 40.0
    assert prom_sum(TEXT, "normalize_hrv_messages_total", {"result": "success"}) == 47.0
    assert prom_sum(TEXT, "normalize_hrv_messages_total") == 48.0
    assert prom_sum(TEXT, "normalize_messages_total", {"stream": "AA_VENDOR_HOT"}) == 3.0


def test_success_filter_does_not_count_retries_or_other_metrics():
    # the issue: the success metric was not filtered to result="success"
    assert prom_sum(TEXT, "normalize_hrv_messages_total", {"result": "retry", "stream": "AA_CORE_HOT"}) == 1.0
    assert prom_sum(TEXT, "normalize_hrv_messages_total", {"stream": "AA_DLQ"}) == 0.0


def test_error_ratio():
    assert prom_error_ratio(TEXT, "normalize_hrv_messages_total") == pytest.approx(1 / 48)
    assert prom_error_ratio(TEXT, "normalize_hrv_messages_total", {"stream": "AA_VENDOR_HOT"}) == 0.0


def test_bad_input_one_line():
    with pytest.raises(AnsibleFilterError, match="expects the /metrics text"):
        prom_sum(None, "x")
    with pytest.raises(AnsibleFilterError, match="labels must be a dict"):
        prom_sum(TEXT, "x", ["stream"])
