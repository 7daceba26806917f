# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""A soak window (the runbook's "Pause: N minutes - monitor"): poll consumer lag and the service's error rate on a
clock for the whole window, and stop at the first alert condition, naming it."""

from __future__ import annotations

import re
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils.client import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.migration_state import consumer_state

_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{([^}]*)\})?\s+([-+0-9.eEinfNa]+)', re.M)
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def counter_totals(text, metric, error_results):
    """(errors, all) summed over every series of ``metric`` in a Prometheus text exposition."""
    errors = total = 0.0
    for name, labels, value in _SAMPLE.findall(text or ""):
        if name != metric:
            continue
        total += float(value)
        if dict(_LABEL.findall(labels or "")).get("result") in error_results:
            errors += float(value)
    return errors, total


def split_consumer(item):
    stream, _sep, name = item.partition("/")
    if not stream or not name:
        raise JetStreamError("consumers entries are STREAM/durable, got %r" % item)
    return stream, name


class Soak(object):
    """One window; ``fetch_metrics()`` returns the exposition text (or None when there is no metrics URL)."""

    def __init__(self, js, params, fetch_metrics, clock=time.monotonic, sleep=time.sleep):
        self.js = js
        self.p = params
        self.fetch_metrics = fetch_metrics
        self.clock = clock
        self.sleep = sleep
        self.polls = []
        self.over_since = {}
        self.first = None

    def lag(self):
        out = {}
        for item in self.p["consumers"]:
            stream, name = split_consumer(item)
            try:
                state = consumer_state(self.js.consumer_info(stream, name))
                out[item] = state["num_pending"] if state["exists"] else None
            except JetStreamError:
                out[item] = None  # no leader this instant: not an alert by itself, the next poll reads again
        return out

    def poll(self, elapsed):
        lag = self.lag()
        text = self.fetch_metrics()
        errors, total = counter_totals(text, self.p["metric"], self.p["error_results"]) if text is not None \
            else (0.0, 0.0)
        if self.first is None:
            self.first = (errors, total)
        d_errors, d_total = errors - self.first[0], total - self.first[1]
        now = self.clock()
        for item, pending in lag.items():
            if pending is not None and pending > self.p["max_pending"]:
                self.over_since.setdefault(item, now)
            elif pending is not None:
                self.over_since.pop(item, None)
        row = dict(elapsed=round(elapsed, 1), pending=lag, processed=d_total, errors=d_errors)
        self.polls.append(row)
        for item, since in self.over_since.items():
            if now - since >= self.p["max_pending_for"]:
                raise JetStreamError(
                    "soak stopped at %.0fs: alert consumer lag - %s has %s pending, over %s for %.0fs (limit %ss); "
                    "consider rollback" % (elapsed, item, lag[item], self.p["max_pending"], now - since,
                                           self.p["max_pending_for"]), polls=self.polls)
        if d_total > 0 and d_errors / d_total > self.p["max_error_rate"]:
            raise JetStreamError(
                "soak stopped at %.0fs: alert high error rate - %s of %s messages failed (%.1f%%, limit %.1f%%); "
                "consider rollback" % (elapsed, d_errors, d_total, 100.0 * d_errors / d_total,
                                       100.0 * self.p["max_error_rate"]), polls=self.polls)
        return row

    def run(self):
        started = self.clock()
        window, every = self.p["seconds"], max(self.p["poll"], 0.1)
        k = 0
        while True:
            self.poll(self.clock() - started)
            k += 1
            if self.clock() - started >= window:
                break
            # polls on a clock: a slow poll shortens the next wait, the last one lands on the window's end
            self.sleep(max(0.0, min(started + k * every, started + window) - self.clock()))
        return dict(changed=False, seconds=round(self.clock() - started, 1), polls=self.polls,
                    lines=["%(elapsed)5.1fs pending %(pending)s processed %(processed)g errors %(errors)g" % r
                           for r in self.polls])
