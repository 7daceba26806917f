#!/usr/bin/env python3
"""The "NATS JetStream - Phase 2 Migration" Grafana dashboard (runbook "Monitoring and Alerts"), built with
grafana-foundation-sdk; writes monitoring/grafana/phase2-migration.json (committed).

  .venv/bin/python monitoring/grafana/build_dashboard.py [--check]

--check exits 1 when the committed JSON differs from what this builds. tests/monitoring runs every panel's PromQL
against the lab's Prometheus. Metric names: docs/MONITORING.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos

OUT = Path(__file__).resolve().parent / "phase2-migration.json"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
CONSUMERS = "normalize-hrv-durable|normalize-oura"

# (title, unit, [(PromQL, legend)]) - the runbook's queries first, as the runbook writes them.
PANELS = [
    ("Message processing rate per stream (runbook 1)", "reqps", [
        ('sum(rate(normalize_hrv_messages_total{result="success"}[5m])) by (stream)', "hrv {{stream}}"),
        ('sum(rate(normalize_messages_total{result="processed"}[5m])) by (stream)', "all {{stream}}"),
    ]),
    ("Consumer lag (runbook 2)", "short", [
        ('nats_consumer_num_pending{consumer="normalize-hrv-durable"}', "{{stream}}/{{consumer}} (runbook)"),
        ('max by (stream, consumer_name) (nats_consumer_num_pending{consumer_name=~"%s"})' % CONSUMERS,
         "{{stream}}/{{consumer_name}}"),
    ]),
    ("Error rate (runbook 3)", "percentunit", [
        ('sum(rate(normalize_hrv_messages_total{result=~"dlq|retry"}[5m]))'
         ' / sum(rate(normalize_hrv_messages_total[5m]))', "retry + dlq share"),
        ('sum(rate(normalize_hrv_messages_total{result=~"dlq|retry"}[5m])) by (result)', "{{result}} /s"),
    ]),
    ("Dead letters (AA_DLQ)", "short", [
        ('nats_stream_total_messages{stream="AA_DLQ"}', "stored"),
    ]),
    ("Database inserts (runbook 4)", "short", [
        ("sum(rate(normalize_db_inserts_total[5m])) * 60", "inserts/min"),
        ("sum(rate(normalize_duplicate_deliveries_total[5m])) * 60", "duplicate deliveries/min"),
    ]),
    ("Shadow source lag", "short", [
        ("max by (stream, source) (nats_stream_source_lag)", "{{stream}} <- {{source}}"),
    ]),
]
# Journal entries (docs/JOURNAL.md) as annotations: the value is the entry's Unix time.
ANNOTATION_EXPR = "aa_migration_journal_timestamp_seconds * 1000"


def build():
    dash = (dashboard.Dashboard("NATS JetStream - Phase 2 Migration")
            .uid("aa-phase2-migration")
            .tags(["nats", "jetstream", "migration"])
            .refresh("30s")
            .time("now-3h", "now")
            .timezone("utc")
            .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
            .annotation(dashboard.AnnotationQuery()
                        .name("Migration journal")
                        .datasource(DS)
                        .enable(True)
                        .icon_color("orange")
                        .expr(ANNOTATION_EXPR)))
    for i, (title, unit, queries) in enumerate(PANELS):
        panel = (timeseries.Panel().title(title).unit(unit).datasource(DS)
                 .grid_pos(GridPos(h=8, w=12, x=12 * (i % 2), y=8 * (i // 2))))
        for j, (expr, legend) in enumerate(queries):
            panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend)
                                      .ref_id("ABCDEFGH"[j]).datasource(DS))
        dash = dash.with_panel(panel)
    return dash.build()


def render():
    text = json.dumps(build(), cls=JSONEncoder, sort_keys=True, indent=2)
    data = json.loads(text)
    # Grafana reads these two from the annotation's own fields: the value is the time, labels name it.
    for ann in data.get("annotations", {}).get("list", []):
        if ann.get("expr") == ANNOTATION_EXPR:
            ann.update(useValueForTime=True, titleFormat="{{event}} (phase {{phase}})", tagKeys="stream,phase,event",
                       step="60s")
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


def queries(data):
    """Every PromQL the dashboard runs: each panel target and each annotation."""
    out = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    out += [a["expr"] for a in data.get("annotations", {}).get("list", []) if a.get("expr")]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed JSON instead of writing it")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if OUT.read_text() != text:
            print("%s is stale: run %s" % (OUT, Path(__file__).name))
            return 1
        return 0
    OUT.write_text(text)
    print("wrote %s (%d panels)" % (OUT, len(PANELS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
