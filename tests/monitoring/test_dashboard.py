"""The committed dashboard is what grafana-foundation-sdk builds from monitoring/grafana/build_dashboard.py (PromQL
from promql.py for the production inventory), with the panels the issue names; tests/monitoring/test_lab_monitoring.py
runs every query of the lab's build against the lab's Prometheus."""

from __future__ import annotations

import json
import sys

from lab.ansible_run import REPO

sys.path.insert(0, str(REPO / "monitoring" / "grafana"))
import build_dashboard  # noqa: E402


def test_committed_json_is_the_sdk_build():
    assert build_dashboard.main(["--check"]) == 0, "run .venv/bin/python monitoring/grafana/build_dashboard.py"


def test_panels_queries_and_annotations():
    data = json.loads(build_dashboard.OUT.read_text())
    assert data["title"] == "NATS JetStream - Phase 2 Migration"
    titles = " | ".join(p["title"] for p in data["panels"])
    for word in ("processing rate per stream", "Consumer lag", "Error rate", "AA_DLQ", "Database inserts"):
        assert word in titles, titles
    for panel in data["panels"]:
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["type"] == "timeseries" and refs and len(refs) == len(set(refs))
        assert all(t["expr"] and t["datasource"]["type"] == "prometheus" for t in panel["targets"])
    ann = data["annotations"]["list"][0]
    assert ann["expr"] == "aa_migration_journal_timestamp_seconds * 1000" and ann["useValueForTime"] is True
    # the runbook's processing-rate PromQL verbatim; its lag query in the names production's exporter uses
    exprs = build_dashboard.queries(data)
    assert 'sum(rate(normalize_hrv_messages_total{result="success"}[5m])) by (stream)' in exprs
    assert ('max by (stream, consumer_name) (nats_consumer_num_pending{consumer_name=~"normalize-hrv-durable|'
            'normalize-oura"})') in exprs


def test_each_inventory_builds_its_own_queries():
    lab = build_dashboard.queries(json.loads(build_dashboard.render("lab")))
    assert any("[10s]" in e for e in lab) and not any("aa_migration_superseded" in e for e in lab)
    titles = [t for t, _u, _q in build_dashboard.panels("production")]
    assert "Shadow source lag" not in titles  # nats-surveyor reports no stream sources
