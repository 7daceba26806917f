# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Prometheus text exposition read as the runbook reads it (``curl .../metrics | grep ...``): ``prom_sum`` adds
the samples of one metric whose labels match, ``prom_error_ratio`` is the runbook's error rate (retry + dlq over
everything handled). The one implementation: the filters of the same names (plugins/filter/metrics.py) and the
migration_verify module both call it. The text is parsed by prometheus_client's parser (escaped label values,
exemplars, timestamps, HELP/TYPE lines: as Prometheus reads them). Bad input raises ValueError (the filter turns it
into AnsibleFilterError)."""

from __future__ import annotations


def samples(text, metric):
    """``[(labels dict, value)]`` of the samples named ``metric`` (a counter's ``_total`` sample name, as the
    runbook greps it) in an exposition text."""
    if not isinstance(text, str):
        raise ValueError("prom_sum expects the /metrics text, got %s" % type(text).__name__)
    try:  # imported when a text is read: module runs that read none do not pay for it
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        # a module has basic loaded already; the filter (controller) loads it only to say this
        from ansible.module_utils.basic import missing_required_lib
        raise ValueError(missing_required_lib("prometheus_client", reason="to read a /metrics text "
                                              "(pip install prometheus-client where this runs)"))
    out = []
    try:
        for family in text_string_to_metric_families(text):
            out.extend((dict(s.labels), float(s.value)) for s in family.samples if s.name == metric)
    except ValueError as exc:
        raise ValueError("the /metrics text is not Prometheus exposition format: %s" % exc)
    return out


def prom_sum(text, metric, labels=None):
    """Sum of ``metric``'s samples whose labels include every ``labels`` item (a value may be a list: any of)."""
    want = labels or {}
    if not isinstance(want, dict):
        raise ValueError("prom_sum labels must be a dict like {stream: AA_CORE_HOT}, got %r" % (want,))

    def match(have):
        for key, value in want.items():
            allowed = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            if have.get(key) not in allowed:
                return False
        return True

    return sum(value for have, value in samples(text, metric) if match(have))


def prom_error_ratio(text, metric, labels=None, errors=("retry", "dlq")):
    """(errors) / (all results) of ``metric`` over its lifetime; 0.0 when it counted nothing."""
    base = dict(labels or {})
    total = prom_sum(text, metric, base)
    if total <= 0:
        return 0.0
    return prom_sum(text, metric, dict(base, result=list(errors))) / total
