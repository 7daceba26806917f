"""The rehearsal's report.html: a timeline (inline SVG, no plotting library) of accepted events/s (ledger), processed
messages/s and each consumer's lag (Prometheus range queries), with phase spans, cut-over markers from the journal and
the longest publish gap; then the ledger table. Used by lab/rehearse.py."""

from __future__ import annotations

import html
import json
import urllib.parse
import urllib.request

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
QUERIES = {
    "processed/s": 'sum(rate(normalize_messages_total{result="processed"}[10s]))',
    "lag": "max by (stream, consumer_name) (nats_consumer_num_pending)",
    "cutovers": 'max by (stream, phase) (aa_migration_journal_timestamp_seconds{event="cutover_at"})',
}


def prom_range(url, query, start, end, step=2):
    """{label text: [(t, value)]} of a range query; {} when Prometheus cannot answer."""
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen("%s/api/v1/query_range?%s" % (url, params), timeout=10) as resp:
            data = json.loads(resp.read())["data"]["result"]
    except (OSError, ValueError, KeyError):
        return {}
    out = {}
    for series in data:
        m = series["metric"]
        name = "%s/%s" % (m["stream"], m["consumer_name"]) if "consumer_name" in m else \
            ("phase %s" % m["phase"] if "phase" in m else "all")
        out[name] = [(float(t), float(v)) for t, v in series["values"]]
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


def chart(title, series, start, end, phases, cutovers, gap, unit, height=230, width=1100):
    """One SVG chart: lines per series, phase spans (alternating shade + name), cut-over lines, the publish gap."""
    left, right, top, bottom = 60, 300, 28, 30
    pw, ph = width - left - right, height - top - bottom
    vmax = max([v for pts in series.values() for _t, v in pts] + [1.0]) * 1.1
    span = max(end - start, 1.0)

    def x(t):
        return left + pw * (t - start) / span

    def y(v):
        return top + ph * (1 - v / vmax)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">'
           % (width, height),
           '<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>' % (left, html.escape(title))]
    for i, (name, t0, t1) in enumerate(phases):
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>'
                   % (x(t0), top, max(x(t1) - x(t0), 1), ph, "#f2f2f2" if i % 2 else "#e8eef7"))
        out.append('<text x="%.1f" y="%d" fill="#555">%s</text>' % (x(t0) + 2, top + 11, html.escape(name)))
    if gap:
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#ffb3b3" opacity="0.7"/>'
                   % (x(gap[0]), top, max(x(gap[1]) - x(gap[0]), 1.5), ph))
    for label, t in cutovers:
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#c00" stroke-dasharray="4,3"/>'
                   % (x(t), x(t), top, top + ph))
        out.append('<text x="%.1f" y="%d" fill="#c00">cut-over %s</text>'
                   % (x(t) + 2, top + ph - 4, html.escape(label)))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>' % (left, left + pw, top + ph, top + ph))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>' % (left, left, top, top + ph))
    for k in range(5):
        v = vmax * k / 4
        out.append('<text x="%d" y="%.1f" text-anchor="end">%.0f</text>' % (left - 4, y(v) + 4, v))
    for k in range(7):
        t = start + span * k / 6
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%.0f s</text>' % (x(t), top + ph + 14, t - start))
    out.append('<text x="12" y="%d" transform="rotate(-90 12 %d)">%s</text>' % (top + ph / 2, top + ph / 2, unit))
    for i, (name, pts) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        if pts:
            out.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>'
                       % (color, " ".join("%.1f,%.1f" % (x(t), y(v)) for t, v in pts if start <= t <= end)))
        out.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>'
                   % (left + pw + 10, top + 14 * i, color, left + pw + 24, top + 14 * i + 9, html.escape(name)))
    out.append("</svg>")
    return "\n".join(out)


def build(report, recs, prometheus_url, start, end, phase_spans):
    """report.html as a string. phase_spans: [(name, wall start, wall end)]."""
    rate = prom_range(prometheus_url, QUERIES["processed/s"], start, end) if prometheus_url else {}
    lag = prom_range(prometheus_url, QUERIES["lag"], start, end) if prometheus_url else {}
    cut = prom_range(prometheus_url, QUERIES["cutovers"], start, end) if prometheus_url else {}
    cutovers = sorted({(name, pts[-1][1]) for name, pts in cut.items() if pts and start <= pts[-1][1] <= end},
                      key=lambda c: c[1])
    gap = longest_gap(recs)
    flow = {"accepted/s (ledger)": accepted_per_second(recs, start, end)}
    flow.update({"processed/s (Prometheus)": pts for pts in rate.values()})
    charts = [chart("Events per second", flow, start, end, phase_spans, cutovers, gap, "events/s"),
              chart("Consumer lag (nats_consumer_num_pending)", lag, start, end, phase_spans, cutovers, gap,
                    "pending")]
    keys = ["sent", "acked", "lost", "unexpected", "duplicates", "duplicate_deliveries", "unknown", "publish_gap_ms",
            "total_seconds", "ok"]
    rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (k, html.escape(str(report.get(k)))) for k in keys)
    phases = "".join("<tr><th>%s</th><td>%s s</td><td>%s tasks</td></tr>"
                     % (html.escape(n), report["phases"].get(n), report["tasks"].get(n)) for n in report["phases"])
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
""" % ("ok" if report.get("ok") else "FAILED", report.get("publish_gap_ms"), "\n".join(charts), rows, phases)
