# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The one bounded wait for values a cluster converges to: read, test, say what is still missing, give up on time."""

from __future__ import annotations

import time


class TimedOut(Exception):
    """The condition did not hold in time; ``line`` says what was missing, ``last`` is the last value read (None
    when the last read failed with ``error``)."""

    def __init__(self, line, last, error, waited):
        super().__init__(line)
        self.line, self.last, self.error, self.waited = line, last, error, waited


def poll_until(read, holds, describe, timeout, poll=0.5, progress=None, transient=()):
    """``read()`` until ``holds(value)``; returns (value, seconds waited). A ``transient`` exception from a read
    counts as "not yet". ``progress(line)`` hears each change of ``describe(value)``."""
    started = time.monotonic()
    last_line = None
    while True:
        try:
            value, error = read(), None
            ok = holds(value)
        except transient as exc:
            value, error, ok = None, exc, False
        waited = time.monotonic() - started
        if ok:
            return value, round(waited, 1)
        line = str(error) if error is not None else describe(value)
        if progress is not None and line != last_line:
            progress("%.1fs: %s" % (waited, line))
            last_line = line
        if waited >= timeout:
            raise TimedOut(line, value, error, round(waited, 1))
        time.sleep(poll)
