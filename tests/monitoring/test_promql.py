"""plugins/module_utils/promql.py, the one source of the collection's PromQL, and module_utils/prometheus.py's
reading of a /metrics text (prometheus_client's parser): names from migration_metrics, the error rate written once,
bad inventory data as one line naming the key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import prometheus  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.promql import Promql, metrics_config  # noqa: E402

MIGRATION = {"legacy": {"stream": "EVENTS"}, "dlq": {"stream": "DLQ"},
             "groups": [{"stream": "HOT", "consumers": [{"name": "worker"}]}]}
SERVICE = {"handled": "svc_messages_total", "processed": {"name": "svc_all_total", "labels": {"result": "ok"}},
           "stored": {"name": "svc_messages_total", "labels": {"result": "success"}}}
RULE = {"window": "5m", "for": "10m", "severity": "P2", "threshold": 0}
MONITORING = {"rate_window": "5m", "traffic_lookback": "1h", "message_rate_per_min": 1,
              "rules": {k: dict(RULE) for k in ("stream_down", "consumer_lag", "error_rate", "db_disconnect",
                                                "message_rate", "legacy_misrouted", "dlq_growing", "source_lag")}}


def promql(exporter="nats-surveyor", **over):
    return Promql(MIGRATION, MONITORING, dict({"exporter": exporter, "service": SERVICE}, **over))


def test_the_error_rate_is_written_once_and_used_by_rules_soak_messages_report_dashboard():
    p = promql()
    ratio = p.error_ratio("5m")
    assert ratio == 'sum(rate(svc_messages_total{result=~"retry|dlq"}[5m])) / sum(rate(svc_messages_total[5m]))'
    rule = next(r for _c, r in p.rules() if r["alert"] == "NormalizeHighErrorRate")
    assert rule["expr"] == ratio + " > 0"
    assert p.status_queries("5m")["error_rate"] == p.message_queries("5m")["error_rate"] == ratio
    assert p.report_queries("5m")["error_rate"] == ratio
    assert ratio in [q for _t, _u, qs in p.dashboard_panels("5m") for q, _l in qs]


def test_each_exporter_convention_names_every_nats_series():
    surveyor, exporter = promql().rules_yaml(), promql("prometheus-nats-exporter").rules_yaml()
    assert 'nats_consumer_num_pending{consumer_name=~"worker"}' in surveyor and "jetstream_" not in surveyor
    assert 'jetstream_consumer_num_pending{consumer_name=~"worker"}' in exporter and "nats_consumer" not in exporter
    assert 'jetstream_stream_last_seq{stream_name=~"HOT"}' in exporter
    assert "MigrationSourceLagNotShrinking" in exporter and "MigrationSourceLagNotShrinking" not in surveyor
    assert "aa_migration_" not in surveyor + exporter and "MigrationLegacyStillStoring" in promql(
        journal_exporter=True).rules_yaml()


def test_the_no_traffic_alerts_require_traffic_min_messages_before():
    def guards(p):
        rules = {r["alert"]: r["expr"] for _c, r in p.rules()}
        return [line for name in ("NatsStreamDown", "NormalizeLowMessageRate") for line in rules[name].splitlines()
                if "offset" in line]
    default = guards(promql())
    assert len(default) == 3 and all(line.endswith(" > 0") or line.endswith(" > 0)") for line in default), default
    floor = guards(Promql(MIGRATION, dict(MONITORING, traffic_min=20), {"service": SERVICE}))
    assert all(line.endswith(" > 20") or line.endswith(" > 20)") for line in floor), floor
    with pytest.raises(ValueError) as err:
        Promql(MIGRATION, dict(MONITORING, traffic_min="many"), {"service": SERVICE}).rules()
    assert str(err.value) == "migration_monitoring.traffic_min must be a number of messages (0 or more), got 'many'"


@pytest.mark.parametrize("metrics, key", [
    ({"exporter": "surveyor", "service": SERVICE}, "migration_metrics.exporter must be one of nats-surveyor, "
                                                   "prometheus-nats-exporter, got 'surveyor'"),
    ({"exporter": "nats-surveyor"}, "migration_metrics.service must say"),
    ({"service": dict(SERVICE, stored="bad name")}, "migration_metrics.service.stored must be a metric name"),
    ({"service": dict(SERVICE, errors=[])}, "migration_metrics.service.errors must be a non-empty list"),
])
def test_bad_migration_metrics_is_one_line_naming_the_key(metrics, key):
    with pytest.raises(ValueError) as err:
        metrics_config(metrics)
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


def test_metrics_text_is_read_by_prometheus_client_s_parser():
    text = ('# TYPE svc_messages_total counter\n'
            'svc_messages_total{result="success",note="a \\"quoted\\" }, value"} 4.0 1700000000000\n'
            'svc_messages_total{result="retry",note="x"} 1\n'
            'svc_messages_created{result="success",note="x"} 1.7e9\n')
    assert prometheus.prom_sum(text, "svc_messages_total") == 5.0
    assert prometheus.prom_sum(text, "svc_messages_total", {"note": 'a "quoted" }, value'}) == 4.0
    assert prometheus.prom_error_ratio(text, "svc_messages_total") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="not Prometheus exposition format"):
        prometheus.prom_sum("svc_messages_total{result=} x\n", "svc_messages_total")
