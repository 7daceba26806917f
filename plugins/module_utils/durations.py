# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Durations as the operator writes them ("48h", "14d", "2m", 90) and as the server stores them (ns).

Every duration option of every module is declared with ``duration_option()`` and read with ``to_nanos`` (what
JetStream stores) or ``to_seconds`` (what the modules wait for), so "2m", "120s", 120 and 120.0 mean the same
everywhere. The ``option_*``/``wait_seconds`` readers fail the task naming the option; ``humanize``, ``fmt_seconds``
and ``ago`` write durations back for messages. The one place for all of this: filters (plugins/filter/durations.py)
and modules only call it.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError

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


def option_seconds(value, option, default=None):
    """A task option's duration in seconds, ``default`` when unset or empty; a task failure naming the option."""
    if value is None or value == "":
        return None if default is None else float(default)
    try:
        return to_seconds(value, option)
    except ValueError as exc:
        raise JetStreamError(str(exc))


def option_nanos(value, option):
    """A task option's duration in nanoseconds (None when unset), for server config; a failure naming the option."""
    try:
        return to_nanos(value, option)
    except ValueError as exc:
        raise JetStreamError(str(exc))


def wait_seconds(value, option, allow_zero=True):
    """A task option's wait (timeout, poll interval) in seconds: set, not negative, and more than 0 unless
    ``allow_zero``; else a task failure naming the option."""
    nanos = option_nanos(value, option)
    if nanos is None or nanos < 0 or (nanos == 0 and not allow_zero):
        raise JetStreamError("%s must be a positive duration, got %r" % (option, value))
    return nanos / float(NANOS["s"])


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


def fmt_seconds(value):
    """Seconds as messages say them: 30.0 -> "30", 0.25 -> "0.25"."""
    return "%g" % round(value, 2)


def ago(seconds):
    """An age for messages, coarse as a human reads it: "45s", "12m", "3.5h" (never negative)."""
    seconds = int(max(0, seconds))
    if seconds < 120:
        return "%ds" % seconds
    if seconds < 7200:
        return "%dm" % (seconds // 60)
    return "%.1fh" % (seconds / 3600.0)


def age_check(when, max_age, now):
    """Whether something made at ``when`` is younger than ``max_age`` at ``now``: ``{ok, found, age_seconds,
    age_hours, max_age_seconds}``. ``when`` is epoch seconds or an RFC 3339 / ISO 8601 time (an RDS snapshot's
    ``snapshot_create_time``); 0, None or "" means nothing was found, which is never young enough."""
    limit = to_seconds(max_age, "max_age")
    at = _epoch(when)
    if not at:
        return dict(ok=False, found=False, age_seconds=None, age_hours=None, max_age_seconds=limit)
    age = now - at
    return dict(ok=age < limit, found=True, age_seconds=age, age_hours=round(age / 3600.0, 2), max_age_seconds=limit)


def _epoch(when):
    if when in (None, ""):
        return 0
    if isinstance(when, (int, float)):
        return float(when)
    text = str(when).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("cannot read %r as a time (epoch seconds or ISO 8601)" % (when,))
    if stamp.tzinfo is None:  # the AWS APIs answer in UTC
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


def humanize(nanos):
    """Shortest exact unit form of a nanosecond count, for messages and diffs ("14d", "2m", "0")."""
    if not nanos:
        return "0"
    for unit in ("w", "d", "h", "m", "s", "ms", "us", "ns"):
        if nanos % NANOS[unit] == 0:
            return "%d%s" % (nanos // NANOS[unit], unit)
    return "%dns" % nanos
