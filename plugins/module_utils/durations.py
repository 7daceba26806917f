# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Durations as the operator writes them ("48h", "14d", "2m", 90) and as the server stores them (ns)."""

from __future__ import annotations

import re

NANOS = {"ns": 1, "us": 10 ** 3, "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9,
         "h": 3600 * 10 ** 9, "d": 86400 * 10 ** 9, "w": 7 * 86400 * 10 ** 9}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d|w)")


def to_nanos(value, field="duration"):
    """Parse seconds (int/float/"90") or Go-style units ("1h30m", "14d", "500ms") to nanoseconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("%s: expected a duration like '48h', '14d', '2m' or seconds, got %r" % (field, value))
    if isinstance(value, (int, float)):
        return int(round(value * NANOS["s"]))
    text = str(value).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(round(float(text) * NANOS["s"]))
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("%s: cannot read %r as a duration; use e.g. '48h', '14d', '2m', '500ms' or seconds"
                         % (field, value))
    return int(round(sum(float(n) * NANOS[u] for n, u in parts)))


def humanize(nanos):
    """Shortest exact unit form of a nanosecond count, for messages and diffs ("14d", "2m", "0")."""
    if not nanos:
        return "0"
    for unit in ("w", "d", "h", "m", "s", "ms", "us", "ns"):
        if nanos % NANOS[unit] == 0:
            return "%d%s" % (nanos // NANOS[unit], unit)
    return "%dns" % nanos
