# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""A soak window (the runbook's "Pause: N minutes - monitor for alerts"), polled on a clock.

With Prometheus (the normal case) every poll reads /api/v1/alerts and stops the window at the first firing alert of
the migration's rules (labels matching ``alert_labels``), naming the alert and its labels; instant queries give the
status line (consumer lag, error rate, inserts/min). The rules' thresholds and ``for:`` durations are the alert
conditions: the soak does not re-implement them. Without Prometheus only consumer lag is watched, read from
JetStream itself (pending over ``max_pending`` for ``max_pending_for``)."""

from __future__ import annotations

import json
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils.client import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.migration_state import consumer_state

from urllib.parse import urlencode

# Reads of Prometheus that may fail in a row before the soak gives up (a restart of Prometheus is not an alert;
# flying blind for several polls is).
MAX_BLIND_POLLS = 3


def split_consumer(item):
    stream, _sep, name = item.partition("/")
    if not stream or not name:
        raise JetStreamError("consumers entries are STREAM/durable, got %r" % item)
    return stream, name


def lag_query(consumers):
    """PromQL: pending per watched consumer (nats-surveyor names; max over replicas), or every consumer."""
    if not consumers:
        return "max by (stream, consumer_name) (nats_consumer_num_pending)"
    parts = ['nats_consumer_num_pending{stream="%s",consumer_name="%s"}' % split_consumer(c) for c in consumers]
    return "max by (stream, consumer_name) (%s)" % " or ".join(parts)


def status_queries(consumers, window):
    return {
        "lag": lag_query(consumers),
        "error_rate": 'sum(rate(normalize_hrv_messages_total{result=~"dlq|retry"}[%s])) '
                      '/ sum(rate(normalize_hrv_messages_total[%s]))' % (window, window),
        "inserts_per_min": "sum(rate(normalize_db_inserts_total[%s])) * 60" % window,
    }


def matches(labels, wanted):
    return all(labels.get(k) == v for k, v in (wanted or {}).items())


def describe_alert(alert):
    """'NormalizeDbDisconnect {runbook=..., severity=P1} since 2026-...: <summary>' in one line."""
    labels = dict(alert.get("labels") or {})
    name = labels.pop("alertname", "?")
    text = "%s {%s}" % (name, ", ".join("%s=%s" % kv for kv in sorted(labels.items())))
    if alert.get("activeAt"):
        text += " active since %s" % alert["activeAt"]
    summary = (alert.get("annotations") or {}).get("summary")
    return text + (": %s" % " ".join(summary.split()) if summary else "")


class Prometheus(object):
    """The HTTP API, through ``fetch(url) -> bytes`` (the module passes ansible's open_url)."""

    def __init__(self, url, fetch):
        self.url = url.rstrip("/")
        self.fetch = fetch

    def _get(self, path, params=None):
        url = self.url + path + ("?" + urlencode(params) if params else "")
        try:
            reply = json.loads(self.fetch(url))
        except ValueError as exc:
            raise JetStreamError("Prometheus at %s answered no JSON: %s" % (self.url, exc))
        if reply.get("status") != "success":
            raise JetStreamError("Prometheus at %s: %s %s" % (self.url, reply.get("errorType"), reply.get("error")))
        return reply["data"]

    def alerts(self):
        return self._get("/api/v1/alerts").get("alerts") or []

    def query(self, expr):
        """[(labels, float)] of an instant vector query."""
        data = self._get("/api/v1/query", {"query": expr})
        return [(r.get("metric") or {}, float(r["value"][1])) for r in data.get("result") or []]


class Soak(object):
    """One window. ``prometheus`` is a Prometheus (or None: lag from JetStream only)."""

    def __init__(self, js, params, prometheus=None, clock=time.monotonic, sleep=time.sleep, progress=None):
        self.js = js
        self.p = params
        self.prom = prometheus
        self.clock = clock
        self.sleep = sleep
        self.progress = progress
        self.polls = []
        self.lines = []
        self.over_since = {}
        self.blind = 0

    # -- with Prometheus: the rules decide, the soak names what fired ---------------------------------------
    def status(self):
        q = status_queries(self.p["consumers"], self.p["rate_window"])
        lag = {"%s/%s" % (m.get("stream"), m.get("consumer_name")): v for m, v in self.prom.query(q["lag"])}
        rate = self.prom.query(q["error_rate"])
        inserts = self.prom.query(q["inserts_per_min"])
        return dict(lag=lag, error_rate=rate[0][1] if rate and rate[0][1] == rate[0][1] else None,
                    inserts_per_min=round(inserts[0][1], 1) if inserts else None)

    def poll_prometheus(self, elapsed):
        try:
            firing = [a for a in self.prom.alerts()
                      if a.get("state") == "firing" and matches(a.get("labels") or {}, self.p["alert_labels"])]
            row = dict(elapsed=round(elapsed, 1), firing=[(a.get("labels") or {}).get("alertname") for a in firing],
                       **self.status())
            self.blind = 0
        except JetStreamError as exc:
            self.blind += 1
            if self.blind >= MAX_BLIND_POLLS:
                raise JetStreamError("soak stopped at %.0fs: %d reads of Prometheus failed in a row, last: %s; "
                                     "the window cannot be watched - check migration_prometheus_url and Prometheus"
                                     % (elapsed, self.blind, exc), polls=self.polls, lines=self.lines)
            row = dict(elapsed=round(elapsed, 1), unknown=str(exc))
            firing = []
        self.record(row)
        if firing:
            raise JetStreamError("soak stopped at %.0fs: alert %s; consider rollback"
                                 % (elapsed, "; ".join(describe_alert(a) for a in firing)),
                                 polls=self.polls, lines=self.lines, alerts=firing)
        return row

    # -- without Prometheus: consumer lag from JetStream --------------------------------------------------------
    def lag_from_jetstream(self):
        out = {}
        for item in self.p["consumers"]:
            stream, name = split_consumer(item)
            try:
                state = consumer_state(self.js.consumer_info(stream, name))
                out[item] = state["num_pending"] if state["exists"] else None
            except JetStreamError:
                out[item] = None  # no leader this instant: not an alert by itself, the next poll reads again
        return out

    def poll_jetstream(self, elapsed):
        lag = self.lag_from_jetstream()
        now = self.clock()
        for item, pending in lag.items():
            if pending is not None and pending > self.p["max_pending"]:
                self.over_since.setdefault(item, now)
            elif pending is not None:
                self.over_since.pop(item, None)
        row = dict(elapsed=round(elapsed, 1), lag=lag)
        self.record(row)
        for item, since in self.over_since.items():
            if now - since >= self.p["max_pending_for"]:
                raise JetStreamError(
                    "soak stopped at %.0fs: alert consumer lag - %s has %s pending, over %s for %.0fs (limit %ss); "
                    "consider rollback" % (elapsed, item, lag[item], self.p["max_pending"], now - since,
                                           self.p["max_pending_for"]), polls=self.polls, lines=self.lines)
        return row

    # -- the window -----------------------------------------------------------------------------------------
    def record(self, row):
        self.polls.append(row)
        line = status_line(row)
        self.lines.append(line)
        if self.progress:
            self.progress(line)

    def run(self):
        started = self.clock()
        window, every = self.p["seconds"], max(self.p["poll"], 0.1)
        poll = self.poll_prometheus if self.prom is not None else self.poll_jetstream
        k = 0
        while True:
            poll(self.clock() - started)
            k += 1
            if self.clock() - started >= window:
                break
            # polls on a clock: a slow poll shortens the next wait, the last one lands on the window's end
            self.sleep(max(0.0, min(started + k * every, started + window) - self.clock()))
        return dict(changed=False, seconds=round(self.clock() - started, 1), polls=self.polls, lines=self.lines,
                    source="prometheus" if self.prom is not None else "jetstream")


def status_line(row):
    """'  4.0s lag AA_CORE_HOT/normalize-hrv-durable=3 error rate 0.0% inserts 1140.0/min alerts none'."""
    if "unknown" in row:
        return "%5.1fs Prometheus not readable this poll: %s" % (row["elapsed"], row["unknown"])
    lag = ", ".join("%s=%g" % (k, v) for k, v in sorted(row["lag"].items()) if v is not None) or "-"
    line = "%5.1fs lag %s" % (row["elapsed"], lag)
    if "firing" in row:
        rate = "-" if row["error_rate"] is None else "%.1f%%" % (100.0 * row["error_rate"])
        inserts = "-" if row["inserts_per_min"] is None else "%g/min" % row["inserts_per_min"]
        line += " error rate %s inserts %s alerts %s" % (rate, inserts, ", ".join(row["firing"]) or "none")
    return line
