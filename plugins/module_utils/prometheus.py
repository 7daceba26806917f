# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Prometheus text exposition read as the runbook reads it (``curl .../metrics | grep ...``): ``prom_sum`` adds
the samples of one metric whose labels match, ``prom_error_ratio`` is the runbook's error rate (retry + dlq over
everything handled). The one implementation: the filters of the same names (plugins/filter/metrics.py) and the
migration_verify module both call it. Bad input raises ValueError (the filter turns it into AnsibleFilterError)."""

from __future__ import annotations

import re

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text, metric):
    """``[(labels dict, value)]`` of ``metric`` in an exposition text (comments and other metrics skipped)."""
    if not isinstance(text, str):
        raise ValueError("prom_sum expects the /metrics text, got %s" % type(text).__name__)
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != metric:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((dict(_LABEL.findall(m.group(2) or "")), value))
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
