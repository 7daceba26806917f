# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Metrics as filters. ``prom_sum`` / ``prom_error_ratio`` read a Prometheus /metrics text as the runbook's
``curl .../metrics | grep ...`` does (module_utils/prometheus.py, prometheus_client's parser). ``migration_rules`` and
``migration_queries`` render the migration's PromQL from the inventory (module_utils/promql.py, the one source of
every expression: rules, soak, messages, dashboard, report)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.athlete_ally.nats.plugins.module_utils import prometheus, promql


def prom_sum(text, metric, labels=None):
    try:
        return prometheus.prom_sum(text, metric, labels)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def prom_error_ratio(text, metric, labels=None, errors=("retry", "dlq")):
    try:
        return prometheus.prom_error_ratio(text, metric, labels, errors)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def _promql(migration, monitoring, metrics):
    try:
        return promql.Promql(migration, monitoring, metrics)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError("migration_metrics / migration_monitoring: %s" % (exc,))


def migration_rules(migration, monitoring, metrics):
    try:
        return _promql(migration, monitoring, metrics).rules_yaml()
    except KeyError as exc:
        raise AnsibleFilterError("migration_monitoring.rules is missing %s (see docs/MONITORING.md)" % exc)


def migration_queries(migration, monitoring, metrics, kind, window=None, consumers=None, existing=None):
    """kind: status (the soak's line), message (the status message), required (what a soak checks before its
    window: series every rule reads, the traffic query that makes the service's counters required, alert names;
    ``existing``, the stream names there are now: series of streams not created yet are not required)."""
    p = _promql(migration, monitoring, metrics)
    window = window or (monitoring or {}).get("rate_window", "5m")
    if kind == "status":
        pairs = [tuple(c.split("/", 1)) for c in consumers or []]
        return p.status_queries(window, pairs)
    if kind == "message":
        return p.message_queries(window)
    if kind == "required":
        return {"series": [{"what": what, "selector": sel, "if_traffic": t} for what, sel, t in p.required_series(existing)],
                "traffic": p.traffic_query(), "alerts": p.alert_names()}
    raise AnsibleFilterError("migration_queries kind must be status, message or required, got %r" % (kind,))


class FilterModule(object):
    def filters(self):
        return {"prom_sum": prom_sum, "prom_error_ratio": prom_error_ratio, "migration_rules": migration_rules,
                "migration_queries": migration_queries}
