"""The rehearsal report's timeline (lab/report.py) from a synthetic run: one line per series, phase spans, the
cut-over markers and the publish gap, and the ledger table - without Prometheus only the ledger's series."""

from __future__ import annotations

import re
import sys

from tests.support.ansible_run import REPO

sys.path.insert(0, str(REPO))
from lab import report as report_html  # noqa: E402


def recs(start, seconds, gap):
    out = []
    for i in range(seconds * 10):
        t = start + i / 10.0
        if gap[0] <= t < gap[1]:
            continue
        out.append({"id": "lg-x-%d" % i, "sent_at": t, "done_at": t + 0.01, "outcome": "acked"})
    return out


def test_timeline_has_series_phases_gap_and_cutovers():
    start = 1_800_000_000.0
    ledger = recs(start, 60, (start + 30, start + 32.5))
    gap = report_html.longest_gap(ledger)
    assert gap[0] < start + 30 < start + 32.5 < gap[1] and abs(gap[1] - gap[0] - 2.6) < 0.05
    series = {"accepted/s": report_html.accepted_per_second(ledger, start, start + 60),
              "lag": [(start + k, float(k)) for k in range(60)]}
    svg = report_html.chart("Events per second", series,
                            start, start + 60, [("phase1", start, start + 30), ("phase2", start + 30, start + 60)],
                            [("phase 1", start + 31)], report_html.longest_gap(ledger), "events/s")
    assert svg.count("<polyline") == 2 and ">phase1<" in svg and ">phase2<" in svg
    assert "cut-over phase 1" in svg and 'fill="#ffb3b3"' in svg


def test_page_without_prometheus_still_shows_the_ledger():
    start = 1_800_000_000.0
    report = {"sent": 600, "acked": 600, "lost": 0, "unexpected": 0, "duplicates": 0, "duplicate_deliveries": 2,
              "unknown": 0, "publish_gap_ms": 2600, "total_seconds": 60, "ok": True,
              "phases": {"phase1": 30.0}, "tasks": {"phase1": 60}}
    page = report_html.build(report, recs(start, 60, (start + 30, start + 32.5)), None, start, start + 60,
                             [("phase1", start, start + 30)])
    assert page.startswith("<!doctype html>") and "rehearsal: ok" in page
    assert re.search(r"<th>duplicate_deliveries</th><td>2</td>", page) and page.count("<svg") == 2
    assert "accepted/s (ledger)" in page
