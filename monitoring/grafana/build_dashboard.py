#!/usr/bin/env python3
"""The "NATS JetStream - Phase 2 Migration" Grafana dashboard (runbook "Monitoring and Alerts"), built with
grafana-foundation-sdk; writes monitoring/grafana/phase2-migration.json (committed).

  .venv/bin/python monitoring/grafana/build_dashboard.py [--check] [--inventory production]

--check exits 1 when the committed JSON differs from what this builds. The PromQL comes from
plugins/module_utils/promql.py for the inventory's migration and migration_metrics (production: the committed
file), the source of the alert rules' and the soak's queries. tests/monitoring runs every panel's PromQL against the
lab's Prometheus (--inventory lab). Metric names: docs/MONITORING.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import yaml

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos

OUT = Path(__file__).resolve().parent / "phase2-migration.json"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
REPO = Path(__file__).resolve().parents[2]


def panels(inventory="production"):
    """[(title, unit, [(PromQL, legend)])] from promql.py for an inventory (the lab's exporter: AA_LAB_EXPORTER)."""
    spec = importlib.util.spec_from_file_location("aa_promql", REPO / "plugins" / "module_utils" / "promql.py")
    promql = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(promql)
    group_vars = REPO / "inventories" / inventory / "group_vars" / "all"
    # Promql reads streams, groups and consumers only: the shared topology where the inventory links it (staging,
    # production: their migration.yml names its parts as templates), the lab's migration.yml (plain data) otherwise.
    shared = group_vars / "migration_topology.yml"
    migration = (yaml.safe_load(shared.read_text())["migration_topology"] if shared.exists()
                 else yaml.safe_load((group_vars / "migration.yml").read_text())["migration"])
    monitoring = yaml.safe_load((group_vars / "monitoring.yml").read_text())
    metrics = dict(monitoring["migration_metrics"])
    if inventory == "lab":
        metrics["exporter"] = os.environ.get("AA_LAB_EXPORTER") or "nats-surveyor"
    window = "5m" if inventory != "lab" else monitoring["migration_monitoring"]["rate_window"]
    return promql.Promql(migration, {}, metrics).dashboard_panels(window)


# Journal entries (docs/JOURNAL.md) as annotations: the value is the entry's Unix time.
ANNOTATION_EXPR = "aa_migration_journal_timestamp_seconds * 1000"


def build(inventory="production"):
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
    for i, (title, unit, queries) in enumerate(panels(inventory)):
        panel = (timeseries.Panel().title(title).unit(unit).datasource(DS)
                 .grid_pos(GridPos(h=8, w=12, x=12 * (i % 2), y=8 * (i // 2))))
        for j, (expr, legend) in enumerate(queries):
            panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend)
                                      .ref_id("ABCDEFGH"[j]).datasource(DS))
        dash = dash.with_panel(panel)
    return dash.build()


def render(inventory="production"):
    text = json.dumps(build(inventory), cls=JSONEncoder, sort_keys=True, indent=2)
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
    print("wrote %s (%d panels)" % (OUT, len(json.loads(text)["panels"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
