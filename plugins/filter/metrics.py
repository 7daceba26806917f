# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Prometheus text exposition read as the runbook reads it (``curl .../metrics | grep ...``), without regexes in
YAML: ``prom_sum`` adds the samples of one metric whose labels match, ``prom_error_ratio`` is the runbook's error
rate (retry + dlq over everything handled). The logic lives in module_utils/prometheus.py (migration_verify sums the
same way); these are its filter faces."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.athlete_ally.nats.plugins.module_utils import prometheus


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


class FilterModule(object):
    def filters(self):
        return {"prom_sum": prom_sum, "prom_error_ratio": prom_error_ratio}
