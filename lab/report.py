"""The rehearsal's report.html: a timeline (matplotlib, one PNG embedded in the page) of accepted events/s (ledger),
processed messages/s, each consumer's lag, the error rate and the DLQ, and the migration's alerts while pending or
firing (Prometheus range queries, PromQL from plugins/module_utils/promql.py for the lab inventory's
migration_metrics), with phase spans, cut-over markers from the journal and the longest publish gap; then the ledger
table. Used by lab/rehearse.py; lab only (requirements.txt, not the execution environment)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

import matplotlib

matplotlib.use("Agg")  # no display in the lab or CI; must be chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

SIZE, DPI = (11.0, 8.0), 100  # 1100 x 800 px, shown 1:1 in the page: sharp, and a test finds it in a screenshot
PHASE_SHADES = ["#e8eef7", "#f4f4f4"]
LABEL_BOX = {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1}  # a line under a label stays legible
LAB_VARS = Path(__file__).resolve().parents[1] / "inventories" / "lab" / "group_vars" / "all"
ALERT_LEVEL = {"pending": 0.5, "firing": 1.0}  # an alert's line: half height while pending, full when firing


def lab_queries(window="10s"):
    """The report's PromQL from the lab inventory (its streams, consumers and migration_metrics; the exporter as the
    lab runs it, AA_LAB_EXPORTER) through promql.py, the source of the rules' and the soak's queries."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "aa_promql", Path(__file__).resolve().parents[1] / "plugins" / "module_utils" / "promql.py")
    promql = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(promql)
    migration = yaml.safe_load((LAB_VARS / "migration.yml").read_text())["migration"]
    metrics = dict(yaml.safe_load((LAB_VARS / "monitoring.yml").read_text())["migration_metrics"])
    metrics["exporter"] = os.environ.get("AA_LAB_EXPORTER") or "nats-surveyor"
    return promql.Promql(migration, {"rate_window": window}, metrics).report_queries(window)


def prom_range(url, query, start, end, step=2, name=None):
    """{name(labels): [(t, value)]} of a range query; {} when Prometheus cannot answer."""
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen("%s/api/v1/query_range?%s" % (url, params), timeout=10) as resp:
            data = json.loads(resp.read())["data"]["result"]
    except (OSError, ValueError, KeyError):
        return {}
    out = {}
    for series in data:
        label = (name or (lambda m: "/".join(m.values()) or "all"))(series["metric"])
        out[label] = [(float(t), float(v)) for t, v in series["values"]]
    return out


def accepted_per_second(recs, start, end):
    counts = {}
    for r in recs:
        if r.get("outcome") == "acked" and start <= r.get("done_at", 0) <= end:
            sec = int(r["done_at"])
            counts[sec] = counts.get(sec, 0) + 1
    return [(float(s), float(counts.get(s, 0))) for s in range(int(start), int(end) + 1)]


def longest_gap(recs):
    """(start, end) of the longest window without a successful publish (as the ledger measures it)."""
    if not recs:
        return None
    acks = sorted(r["done_at"] for r in recs if r["outcome"] == "acked")
    points = [min(r["sent_at"] for r in recs)] + acks + [max(r.get("done_at", r["sent_at"]) for r in recs)]
    pairs = list(zip(points, points[1:]))
    return max(pairs, key=lambda p: p[1] - p[0]) if pairs else None


def timeline(panels, start, end, phases, cutovers, gap):
    """The timeline as PNG bytes, and what the figure shows: {"legend": [...], "annotations": [...]} read back from
    its artists (not from the arguments), so a test sees what was really drawn.
    panels: [(title, {series name: [(t, value)]}, unit)], stacked, sharing one time axis (seconds since start)."""
    fig, grid = plt.subplots(len(panels), 1, sharex=True, figsize=SIZE, dpi=DPI, layout="constrained", squeeze=False)
    axes = grid[:, 0]
    for n, (ax, (title, series, unit)) in enumerate(zip(axes, panels)):
        for i, (_name, t0, t1) in enumerate(phases):
            ax.axvspan(t0 - start, t1 - start, color=PHASE_SHADES[i % 2], zorder=0)
        if gap:
            ax.axvspan(gap[0] - start, gap[1] - start, color="#ff8080", alpha=0.6, zorder=1,
                       label="_nolegend_" if n else "longest publish gap (%.0f ms)" % ((gap[1] - gap[0]) * 1000))
        for _label, t in cutovers:
            ax.axvline(t - start, color="#c00000", linestyle="--", linewidth=1.2, zorder=2)
        for name, pts in sorted(series.items()):
            pts = [(t - start, v) for t, v in pts if start <= t <= end]
            ax.plot([t for t, _v in pts], [v for _t, v in pts], linewidth=1.3, label=name, zorder=3)
        if not series:
            ax.text(0.5, 0.5, "no data (Prometheus not reachable)", transform=ax.transAxes, ha="center", color="#777")
        ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
        ax.set(ylabel=unit, xlim=(0, max(end - start, 1.0)))
        ax.set_ylim(0, max(ax.get_ylim()[1], 1.0) * 1.3)  # headroom above the data for the phase and cut-over names
        ax.grid(axis="y", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # outside the plot: consumer names are long and would hide the lines
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    # Phase names once, on the top panel, alternating two heights so short neighbouring phases do not overlap.
    for i, (name, t0, _t1) in enumerate(phases):
        axes[0].text(t0 - start, 0.97 - 0.09 * (i % 2), " " + name, transform=axes[0].get_xaxis_transform(),
                     va="top", fontsize=8, color="#333", bbox=LABEL_BOX, zorder=4)
    # Cut-over names once, on the bottom panel, upright along their line so close cut-overs stay apart.
    for label, t in cutovers:
        axes[-1].text(t - start, 0.97, "cut-over " + label, transform=axes[-1].get_xaxis_transform(), rotation=90,
                      va="top", ha="right", fontsize=8, color="#c00000", bbox=LABEL_BOX, zorder=4)
    axes[-1].set_xlabel("seconds since the rehearsal started")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    drawn = {"legend": [t.get_text() for ax in axes if ax.get_legend() for t in ax.get_legend().get_texts()],
             "annotations": [t.get_text().strip() for ax in axes for t in ax.texts]}
    plt.close(fig)
    return buf.getvalue(), drawn


def alert_tracks(series):
    """ALERTS range series as one line per alert: 0 quiet, ALERT_LEVEL while pending or firing."""
    tracks = {}
    for key, pts in series.items():
        name, _sep, state = key.rpartition(" ")
        level = ALERT_LEVEL.get(state, 1.0)
        merged = dict(tracks.get(name, []))
        for t, _v in pts:
            merged[t] = max(merged.get(t, 0.0), level)
        tracks[name] = sorted(merged.items())
    return tracks


def build(report, recs, prometheus_url, start, end, phase_spans, queries=None):
    """report.html as a string. phase_spans: [(name, wall start, wall end)]; queries: lab_queries() by default."""
    q = queries or lab_queries()
    labels = q["labels"]

    def rng(expr, name=None):
        return prom_range(prometheus_url, expr, start, end, name=name) if prometheus_url and expr else {}
    rate = rng(q["processed"])
    lag = rng(q["lag"], lambda m: "%s/%s" % (m.get(labels["stream"]), m.get(labels["consumer"])))
    errors = {"error rate %": [(t, 100.0 * v) for t, v in pts if not math.isnan(v)]  # 0/0 while idle: no point
              for pts in rng(q["error_rate"]).values()}
    dlq = {"%s stored" % m: pts for m, pts in rng(q["dlq"], lambda m: m.get(labels["stream"], "DLQ")).items()}
    alerts = alert_tracks(rng(q["alerts"], lambda m: "%s %s" % (m.get("alertname"), m.get("alertstate"))))
    if prometheus_url and not alerts:  # a quiet run is a flat line, not "no data"
        alerts = {"none pending or firing": [(start, 0.0), (end, 0.0)]}
    cut = rng(q.get("cutovers"), lambda m: "phase %s" % m.get("phase"))
    cutovers = sorted({(name, pts[-1][1]) for name, pts in cut.items() if pts and start <= pts[-1][1] <= end},
                      key=lambda c: c[1])
    gap = longest_gap(recs)
    flow = {"accepted/s (ledger)": accepted_per_second(recs, start, end)}
    flow.update({"processed/s (Prometheus)": pts for pts in rate.values()})
    png, _drawn = timeline([("Events per second", flow, "events/s"),
                            ("Consumer lag", lag, "pending"),
                            ("Error rate and dead letters", dict(errors, **dlq), "% / messages"),
                            ("Migration alerts (half: pending, full: firing)", alerts, "state")],
                           start, end, phase_spans, cutovers, gap)
    img = '<img alt="timeline" width="%d" src="data:image/png;base64,%s">' % (
        SIZE[0] * DPI, base64.b64encode(png).decode("ascii"))
    keys = ["sent", "acked", "lost", "unexpected", "duplicates", "duplicate_deliveries", "unknown", "publish_gap_ms",
            "total_seconds", "ok"]
    rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (k, html.escape(str(report.get(k)))) for k in keys)
    phases = "".join("<tr><th>%s</th><td>%s s</td><td>%s tasks</td><td>%s module runs</td></tr>"
                     % (html.escape(n), report["phases"].get(n), report["tasks"].get(n),
                        report.get("module_runs", {}).get(n, "?")) for n in report["phases"])
    return """<!doctype html>
<html><head><meta charset="utf-8"><title>Phase 2 migration rehearsal</title>
<style>body{font-family:sans-serif;margin:20px}table{border-collapse:collapse;margin:8px 0 16px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}</style></head><body>
<h1>Phase 2 migration rehearsal: %s</h1>
<p>Shaded spans: phases; dashed red lines: cut-overs (journal); red band: longest window without an accepted
publish (%s ms).</p>
%s
<h2>Ledger</h2><table>%s</table>
<h2>Phases</h2><table>%s</table>
</body></html>
""" % ("ok" if report.get("ok") else "FAILED", report.get("publish_gap_ms"), img, rows, phases)
