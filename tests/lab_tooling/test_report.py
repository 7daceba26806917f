"""The rehearsal report's timeline (lab/report.py) from a synthetic run: one line per series, phase spans, the
cut-over markers and the publish gap, and the ledger table - without Prometheus only the ledger's series. The page
is opened in headless Chromium (`make setup` installs it) and its screenshot must show the plot."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import sys

import matplotlib.image
import numpy
import pytest

from lab.ansible_run import REPO

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


def png_pixels(data):
    return matplotlib.image.imread(io.BytesIO(data), format="png")


def colours(pixels):
    rgb = (pixels[:, :, :3] * 255).round().astype(numpy.uint32)
    return len(numpy.unique(rgb[:, :, 0] << 16 | rgb[:, :, 1] << 8 | rgb[:, :, 2]))


def embedded_png(page):
    m = re.search(r'<img alt="timeline" width="1100" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert m, "no embedded PNG timeline in the page"
    return base64.b64decode(m.group(1))


def synthetic_page(tmp_path):
    """report.html of a 60 s synthetic run without Prometheus, written to tmp_path."""
    start = 1_800_000_000.0
    report = {"sent": 600, "acked": 600, "lost": 0, "unexpected": 0, "duplicates": 0, "duplicate_deliveries": 2,
              "unknown": 0, "publish_gap_ms": 2600, "total_seconds": 60, "ok": True,
              "phases": {"phase1": 30.0}, "tasks": {"phase1": 60}, "module_runs": {"phase1": 12}}
    page = report_html.build(report, recs(start, 60, (start + 30, start + 32.5)), None, start, start + 60,
                             [("phase1", start, start + 30)], queries=report_html.lab_queries())
    path = tmp_path / "report.html"
    path.write_text(page)
    return page, path


def test_timeline_has_series_phases_gap_and_cutovers():
    start = 1_800_000_000.0
    ledger = recs(start, 60, (start + 30, start + 32.5))
    gap = report_html.longest_gap(ledger)
    assert gap[0] < start + 30 < start + 32.5 < gap[1] and abs(gap[1] - gap[0] - 2.6) < 0.05
    flow = {"accepted/s": report_html.accepted_per_second(ledger, start, start + 60)}
    lag = {"EVENTS/worker": [(start + k, float(k)) for k in range(60)],
           "EVENTS_V2/worker": [(start + k, 60.0 - k) for k in range(60)]}
    png, drawn = report_html.timeline([("Events per second", flow, "events/s"), ("Consumer lag", lag, "pending")],
                                      start, start + 60,
                                      [("phase1", start, start + 30), ("phase2", start + 30, start + 60)],
                                      [("phase 1", start + 31)], gap)
    assert drawn["legend"] == ["longest publish gap (2600 ms)", "accepted/s", "EVENTS/worker", "EVENTS_V2/worker"]
    assert drawn["annotations"] == ["phase1", "phase2", "cut-over phase 1"]
    assert png_pixels(png).shape[:2] == (800, 1100)


def test_alert_states_become_one_line_per_alert_half_high_while_pending():
    series = {"NatsConsumerLag pending": [(1.0, 1.0), (2.0, 1.0)], "NatsConsumerLag firing": [(3.0, 1.0)],
              "MigrationDlqGrowing firing": [(2.0, 1.0)]}
    tracks = report_html.alert_tracks(series)
    assert tracks == {"NatsConsumerLag": [(1.0, 0.5), (2.0, 0.5), (3.0, 1.0)], "MigrationDlqGrowing": [(2.0, 1.0)]}


def test_report_queries_come_from_the_lab_inventory_through_promql():
    q = report_html.lab_queries()
    assert q["error_rate"].startswith('sum(rate(normalize_hrv_messages_total{result=~"retry|dlq"}[10s]))')
    assert q["alerts"] == 'max by (alertname, alertstate) (ALERTS{runbook="phase2-migration"})'
    assert 'nats_stream_total_messages{stream="AA_DLQ"}' in q["dlq"] and "cutovers" in q


def test_page_without_prometheus_still_shows_the_ledger(tmp_path):
    page, _path = synthetic_page(tmp_path)
    assert page.startswith("<!doctype html>") and "rehearsal: ok" in page
    assert re.search(r"<th>duplicate_deliveries</th><td>2</td>", page) and "<svg" not in page
    assert "<tr><th>phase1</th><td>30.0 s</td><td>60 tasks</td><td>12 module runs</td></tr>" in page
    pixels = png_pixels(embedded_png(page))
    assert pixels.shape[:2] == (800, 1100) and colours(pixels) > 50


def test_chromium_screenshot_of_the_page_is_not_blank(tmp_path):
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("chromium is not installed: `make setup` installs it (Debian package, as root)", pytrace=False)
    page, path = synthetic_page(tmp_path)
    shot = tmp_path / "shot.png"
    # --no-sandbox: Chromium refuses to run as root with its sandbox (the lab and CI run as root).
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--screenshot=%s" % shot,
                           "--window-size=1280,1600", path.as_uri()], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    pixels = png_pixels(shot.read_bytes())[:, :, :3]
    assert pixels.shape[:2] == (1600, 1280)
    # The timeline itself, pixel for pixel, below the heading at the body's 20 px margin: a colourful page whose
    # image did not load (the tables move up) would pass a colour count but not this.
    plot = png_pixels(embedded_png(page))[:, :, :3]
    h, w = plot.shape[:2]
    y = min(range(400), key=lambda y: abs(pixels[y:y + 30, 20:20 + w] - plot[:30]).mean())
    assert abs(pixels[y:y + h, 20:20 + w] - plot).mean() < 0.01, "the timeline is not in the screenshot"
    assert colours(pixels[y:y + h, 20:20 + w]) > 50 and pixels[y:y + h, 20:20 + w].std() > 0.05
