"""The committed dashboard is what grafana-foundation-sdk builds from monitoring/grafana/build_dashboard.py, with the
panels the issue names; tests/monitoring/test_lab_monitoring.py runs every query against the lab's Prometheus."""

from __future__ import annotations

import json
import sys

from tests.support.ansible_run import REPO

sys.path.insert(0, str(REPO / "monitoring" / "grafana"))
import build_dashboard  # noqa: E402


def test_committed_json_is_the_sdk_build():
    assert build_dashboard.main(["--check"]) == 0, "run .venv/bin/python monitoring/grafana/build_dashboard.py"


def test_panels_queries_and_annotations():
    data = json.loads(build_dashboard.OUT.read_text())
    assert data["title"] == "NATS JetStream - Phase 2 Migration"
    titles = " | ".join(p["title"] for p in data["panels"])
    for word in ("processing rate per stream", "Consumer lag", "Error rate", "AA_DLQ", "Database inserts",
                 "source lag"):
        assert word in titles, titles
    for panel in data["panels"]:
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["type"] == "timeseries" and refs and len(refs) == len(set(refs))
        assert all(t["expr"] and t["datasource"]["type"] == "prometheus" for t in panel["targets"])
    ann = data["annotations"]["list"][0]
    assert ann["expr"] == "aa_migration_journal_timestamp_seconds * 1000" and ann["useValueForTime"] is True
    # the runbook's two PromQL queries, verbatim
    exprs = build_dashboard.queries(data)
    assert 'sum(rate(normalize_hrv_messages_total{result="success"}[5m])) by (stream)' in exprs
    assert 'nats_consumer_num_pending{consumer="normalize-hrv-durable"}' in exprs
