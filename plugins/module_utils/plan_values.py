# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Readers of single plan values (names, subjects, durations, sizes, numbers, choices) that collect one line per
mistake: ``<inventory key>: <what is wrong>; <what to do>``. Used by plan.py; pure, no I/O.

Values may arrive as strings: an inventory value templated by Ansible ("{{ x | default(20) }}") can render as
"20". A number in a string is therefore read as the number, as the modules' int/duration options would.
"""

from __future__ import annotations

import difflib
import re

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations
from ansible_collections.athlete_ally.nats.plugins.module_utils.subjects import name_problem, overlap, subject_problem

# The choices of the jetstream_stream options the phases pass from migration.stream_defaults.
STREAM_CHOICES = {"storage": ("file", "memory"), "retention": ("limits", "interest", "workqueue"),
                  "discard": ("old", "new"), "compression": ("none", "s2")}
# Keys the roles read; an unknown key close to one of these is most likely a typo that would be silently ignored.
TOP_KEYS = ("legacy", "stream_defaults", "dlq", "groups", "service", "modes", "image", "phase2_strategy",
            "blue_green", "soak_seconds", "soak_poll_seconds", "alerts", "backlog_max", "thresholds", "post",
            "drain_timeout", "drain_stall_timeout", "verify_poll_interval", "catchup_timeout", "converge_timeout",
            "bind_timeout", "bind_settle_seconds", "backup", "staging_binding_check", "staging_service",
            "preflight_valid_for", "control_bucket", "service_contract", "require_staging_validation",
            "staging_validated", "rollback_stall_timeout")
GROUP_KEYS = ("phase", "name", "stream", "subjects", "max_age", "consumers", "verify")
DURATION_HINT = "a duration such as '30s', '10m', '6h' or seconds"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt])i?b?", re.I)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def nanos(value):
    """A duration in nanoseconds, or None when absent or unreadable (its own check reports it)."""
    try:
        return durations.to_nanos(value)
    except ValueError:
        return None


def _as_number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        return float(text) if "." in text else int(text)
    return None


def typos(e, key, mapping, known):
    for k in sorted(mapping, key=str):
        if k not in known:
            close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.8)
            if close:
                e.add("%s.%s" % (key, k), "unknown key, ignored by the phases; did you mean %s?" % close[0])


class Errors(object):
    """Collects the lines; each reader returns the value it read (or None / a safe empty value)."""

    def __init__(self):
        self.lines = []
        self.workqueue_clashes = []
        self.muted = set()  # mappings found missing: their keys are not reported again one by one

    def add(self, key, msg):
        if not any(key.startswith(m) and key[len(m):][:1] in (".", "[") for m in self.muted):
            self.lines.append("%s: %s" % (key, msg))

    def _missing(self, key, value, required, what):
        if value is None or value == "":
            if required:
                self.add(key, "missing; set %s" % what)
            return True
        return False

    def mapping(self, key, value, empty_ok=True):
        if self._missing(key, value, True, "it (a mapping)"):
            self.muted.add(key)
            return {}
        if not isinstance(value, dict):
            self.add(key, "expected a mapping, got %r" % (value,))
            self.muted.add(key)
            return {}
        if not value and not empty_ok:
            self.add(key, "is empty; set the service's environment for this mode")
        return value

    def text(self, key, value):
        if self._missing(key, value, True, "it (a non-empty string)"):
            return False
        if not isinstance(value, str):
            self.add(key, "expected a string, got %r" % (value,))
            return False
        return True

    def name(self, key, value, kind):
        if self._missing(key, value, True, "the %s name" % kind):
            return False
        problem = name_problem(value)
        if problem:
            self.add(key, "%r is not a valid %s name: it %s" % (value, kind, problem))
        return problem is None

    def subjects(self, key, value):
        """The valid subjects of a non-empty list (duplicates and invalid ones reported)."""
        if value is None or value == []:
            self.add(key, "missing or empty; list at least one subject")
            return []
        if not isinstance(value, list):
            self.add(key, "expected a list of subjects, got %r" % (value,))
            return []
        out = []
        for s in value:
            problem = subject_problem(s)
            if problem:
                self.add(key, "%r is not a valid subject: it %s" % (s, problem))
            elif s in out:
                self.add(key, "%r is listed twice; list it once" % s)
            else:
                clash = next((t for t in out if overlap(s, t)), None)
                if clash:  # the server refuses overlapping subjects in one stream, and overlapping filters
                    self.add(key, "%r overlaps %r in the same list; the server refuses that: keep the wider one"
                             % (s, clash))
                out.append(s)
        return out

    def subject(self, key, value):
        if self._missing(key, value, True, "a subject"):
            return False
        problem = subject_problem(value)
        if problem:
            self.add(key, "%r is not a valid subject: it %s" % (value, problem))
        return problem is None

    def choice(self, key, value, choices, required=True):
        if self._missing(key, value, required, "one of %s" % ", ".join(choices)):
            return None
        if value not in choices:
            self.add(key, "%r is not one of %s" % (value, ", ".join(choices)))
            return None
        return value

    def boolean(self, key, value, required=True):
        if self._missing(key, value, required, "true or false"):
            return None
        if not isinstance(value, bool):
            self.add(key, "expected true or false, got %r" % (value,))
            return None
        return value

    def number(self, key, value, low=None, high=None, required=True, integer=False):
        what = "an integer" if integer else "a number"
        if self._missing(key, value, required, what):
            return None
        n = _as_number(value)
        if n is None or (integer and n != int(n)):
            self.add(key, "expected %s, got %r" % (what, value))
            return None
        if (low is not None and n < low) or (high is not None and n > high):
            bounds = "between %s and %s" % (low, high) if high is not None else "at least %s" % low
            self.add(key, "%r is out of range; it must be %s" % (value, bounds))
            return None
        return int(n) if integer else n

    def integer(self, key, value, low=None, high=None, required=True, nonzero=False):
        n = self.number(key, value, low=low, high=high, required=required, integer=True)
        if nonzero and n == 0:
            self.add(key, "0 is not allowed; use -1 for unlimited or a positive number")
            return None
        return n

    def duration(self, key, value, required=True, positive=False, what=DURATION_HINT):
        if self._missing(key, value, required, what):
            return None
        try:
            n = durations.to_nanos(value, key)
        except ValueError as exc:
            self.lines.append(str(exc))
            return None
        if n < 0 or (positive and n == 0):
            self.add(key, "%r must be %s" % (value, "more than 0" if positive else "0 or more"))
            return None
        return n

    def whole_seconds(self, key, value, positive=False, required=True):
        """Seconds as a number: the playbooks read these keys with ``| int``, where '14d' would read as 0."""
        if self._missing(key, value, required, "a number of seconds"):
            return None
        n = _as_number(value)
        if n is None or n != int(n):
            ns = nanos(value)
            hint = " (%r is %d)" % (value, ns // durations.NANOS["s"]) if ns and isinstance(value, str) else ""
            self.add(key, "expected whole seconds as a number, got %r; the playbooks read it with '| int', so write "
                          "the number of seconds%s" % (value, hint))
            return None
        return self.number(key, n, low=1 if positive else 0, integer=True)

    def size(self, key, value):
        """Bytes as the jetstream_stream module takes them: an integer, -1 for unlimited."""
        if self._missing(key, value, True, "bytes as an integer (-1: unlimited)"):
            return None
        n = _as_number(value)
        if n is None or n != int(n):
            m = _SIZE.fullmatch(str(value).strip())
            hint = " (%s is %d)" % (value, float(m.group(1)) * 1024 ** "kmgt".index(m.group(2).lower()) * 1024) \
                if m else ""
            self.add(key, "expected bytes as an integer (-1: unlimited), got %r; jetstream_stream takes no unit%s"
                     % (value, hint))
            return None
        return self.number(key, n, low=-1, integer=True)

    def unique(self, key, value, seen, todo):
        if value in seen:
            self.add(key, "%r is also %s; %s" % (value, seen[value], todo))
        else:
            seen[value] = key
