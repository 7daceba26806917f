# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Durations as the operator writes them ("48h", "14d", "2m", 90) and as the server stores them (ns).

Every duration option of every module is declared with ``duration_option()`` and read with ``to_nanos`` (what
JetStream stores) or ``to_seconds`` (what the modules wait for), so "2m", "120s", 120 and 120.0 mean the same
everywhere.
"""

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


def to_seconds(value, field="duration"):
    """Like ``to_nanos``, in (float) seconds: for timeouts and delays the module itself waits."""
    nanos = to_nanos(value, field)
    return None if nanos is None else nanos / float(NANOS["s"])


def duration_option(**kwargs):
    """Argument spec of a duration option (document it as ``type: raw``); keyword arguments as for any option.

    ``raw`` because no built-in type takes all the inputs: ``float`` refuses "2m" and ``str`` turns 90 into "90"
    with a conversion warning. The value is checked where it is parsed (``to_nanos``, ``to_seconds``), with the
    option's name in the error.
    """
    return dict(kwargs, type="raw")


def params_to_seconds(module, *names):
    """Replace the duration options ``names`` in ``module.params`` by float seconds, or fail the task naming the
    option. For modules whose logic waits in seconds (timeouts, retry delays)."""
    for name in names:
        try:
            module.params[name] = to_seconds(module.params[name], name)
        except ValueError as exc:
            module.fail_json(msg=str(exc))


def humanize(nanos):
    """Shortest exact unit form of a nanosecond count, for messages and diffs ("14d", "2m", "0")."""
    if not nanos:
        return "0"
    for unit in ("w", "d", "h", "m", "s", "ms", "us", "ns"):
        if nanos % NANOS[unit] == 0:
            return "%d%s" % (nanos // NANOS[unit], unit)
    return "%dns" % nanos
