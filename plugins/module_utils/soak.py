# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""A soak window (the runbook's "Pause: N minutes - monitor for alerts"), polled on a clock.

With Prometheus (the normal case) every poll reads /api/v1/alerts and stops the window at the first firing alert of
the migration's rules (labels matching ``alert_labels``), naming the alert and its labels; instant queries give the
status line (consumer lag, error rate, stored/min; the PromQL comes from module_utils/promql.py through the task).
The rules' thresholds and ``for:`` durations are the alert conditions: the soak does not re-implement them.

It fails closed - a window it could not watch is no pass: before the window, the rule group must be loaded
(/api/v1/rules, every expected alert in it, none in error) and every series the rules read must exist (the service's
counters once the app's streams have had traffic), else it refuses in one line; a failed read of Prometheus in the
window's last part fails it; an alert still pending when the window ends is waited on, bounded by its rule's ``for:``,
until it fires (fail) or resolves. Without Prometheus only consumer lag is watched, read from JetStream itself
(pending over ``max_pending`` for ``max_pending_for``)."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from ansible_collections.athlete_ally.nats.plugins.module_utils import http_client
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.migration_state import consumer_state

# Reads of Prometheus that may fail in a row before the soak gives up (a restart of Prometheus is not an alert;
# flying blind for several polls is).
MAX_BLIND_POLLS = 3
# How long absent series are asked again before a window is refused: this many polls, at least SERIES_WAIT_MIN s.
SERIES_WAIT_POLLS, SERIES_WAIT_MIN = 3, 10.0


def split_consumer(item):
    stream, _sep, name = item.partition("/")
    if not stream or not name:
        raise JetStreamError("consumers entries are STREAM/durable, got %r" % item)
    return stream, name


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
    """The HTTP API, through ``fetch(url) -> bytes`` (the module passes http_client.request)."""

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

    def rule_groups(self):
        return self._get("/api/v1/rules", {"type": "alert"}).get("groups") or []

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
        self.pending = []

    # -- with Prometheus: refuse a window that cannot be watched -------------------------------------------
    def refuse(self, what):
        raise JetStreamError("soak refused before the window: %s; the window would pass without seeing an alert "
                             "(docs/MONITORING.md)" % what, polls=self.polls, lines=self.lines)

    def preflight(self):
        """The rule group loaded with every expected alert healthy, and every series its rules read present.
        Returns {alert name: for: seconds} (bounds the wait on an alert pending at the window's end)."""
        group = self.p.get("rule_group") or "phase2-migration"
        try:
            groups = self.prom.rule_groups()
        except JetStreamError as exc:
            self.refuse("cannot read the rules: %s" % exc)
        rules = [r for g in groups if g.get("name") == group for r in g.get("rules") or []]
        if not rules:
            self.refuse("Prometheus at %s has no rule group %r loaded (/api/v1/rules: %s) - add the migration's rules "
                        "(playbooks/monitoring_rules.yml) to its rule_files and reload it"
                        % (self.prom.url, group, ", ".join(sorted(g.get("name", "?") for g in groups)) or "none"))
        names = {r.get("name") for r in rules}
        missing = [a for a in self.p.get("alerts") or [] if a not in names]
        if missing:
            self.refuse("rule group %r at %s lacks %s - it is not this inventory's rendering: reload "
                        "playbooks/monitoring_rules.yml's output" % (group, self.prom.url, ", ".join(missing)))
        broken = ["%s (%s)" % (r.get("name"), r.get("lastError")) for r in rules if r.get("health") == "err"]
        if broken:
            self.refuse("rules in error at %s: %s" % (self.prom.url, "; ".join(broken)))
        # a stream created just before the window (phase 0's DLQ) reaches Prometheus one exporter poll and one
        # scrape later: absent series are asked again for a few polls before the window is refused
        deadline = self.clock() + max(SERIES_WAIT_POLLS * self.p["poll"], SERIES_WAIT_MIN)
        while True:
            absent = self.absent_series()
            if not absent or self.clock() >= deadline:
                break
            self.sleep(max(0.1, min(self.p["poll"], deadline - self.clock())))
        if absent:
            self.refuse("no series %s in Prometheus at %s - its rules cannot fire: scrape the exporter and service "
                        "named in migration_metrics" % (", ".join(absent), self.prom.url))
        return {r.get("name"): float(r.get("duration") or 0) for r in rules}

    def absent_series(self):
        """'selector (what)' of every required series Prometheus has none of (the service's counters only once the
        app's streams had traffic: labelled counters have no series before their first message)."""
        traffic, absent = None, []
        for item in self.p.get("required_series") or []:
            try:
                if item.get("if_traffic"):
                    if traffic is None:
                        found = self.prom.query(self.p["traffic_query"]) if self.p.get("traffic_query") else []
                        traffic = bool(found and found[0][1] > 0)
                    if not traffic:
                        continue
                present = self.prom.query("count(%s)" % item["selector"])
            except JetStreamError as exc:
                self.refuse("cannot query Prometheus for %s: %s" % (item["selector"], exc))
            if not present:
                absent.append("%s (%s)" % (item["selector"], item.get("what", "")))
        return absent

    # -- with Prometheus: the rules decide, the soak names what fired ---------------------------------------
    def status(self):
        q = self.p["status_queries"]
        names = q.get("lag_labels") or ["stream", "consumer_name"]  # the exporter's stream and consumer labels
        lag = {"/".join(str(m.get(n)) for n in names): v for m, v in self.prom.query(q["lag"])}
        rate = self.prom.query(q["error_rate"])
        stored = self.prom.query(q["stored_per_min"])
        return dict(lag=lag, error_rate=rate[0][1] if rate and rate[0][1] == rate[0][1] else None,
                    stored_per_min=round(stored[0][1], 1) if stored else None)

    def poll_prometheus(self, elapsed):
        try:
            mine = [a for a in self.prom.alerts() if matches(a.get("labels") or {}, self.p["alert_labels"])]
            firing = [a for a in mine if a.get("state") == "firing"]
            self.pending = [a for a in mine if a.get("state") == "pending"]
            row = dict(elapsed=round(elapsed, 1), firing=[(a.get("labels") or {}).get("alertname") for a in firing],
                       pending=[(a.get("labels") or {}).get("alertname") for a in self.pending], **self.status())
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

    def blind_at_end(self, window, every):
        """A failed read in the window's last MAX_BLIND_POLLS polls: the streak that would fail it had no time to
        grow, so the end of the window was not watched."""
        tail = [p for p in self.polls if p["elapsed"] >= window - MAX_BLIND_POLLS * every]
        failed = [p for p in tail if "unknown" in p]
        if failed:
            raise JetStreamError("soak failed at %.0fs: Prometheus was not readable at %s in the window's last %.0fs "
                                 "(last: %s); the end of the window was not watched - check Prometheus and run the "
                                 "soak again" % (self.polls[-1]["elapsed"], ", ".join("%.0fs" % p["elapsed"] for p in failed),
                                                 MAX_BLIND_POLLS * every, failed[-1]["unknown"]),
                                 polls=self.polls, lines=self.lines)

    def settle(self, started, every, durations):
        """Alerts pending at the window's end: poll on until each fires (the poll fails the window) or resolves,
        at most the longest pending rule's for: plus two polls, and never more than ``pending_wait``."""
        if not self.pending:
            return
        longest = max(durations.get((a.get("labels") or {}).get("alertname"), 0.0) for a in self.pending)
        cap = self.p.get("pending_wait")
        deadline = self.clock() + min(longest + 2 * every, 900.0 if cap is None else float(cap))
        while self.pending:
            if self.clock() >= deadline:
                raise JetStreamError("soak failed at %.0fs: alert %s still pending after waiting %.0fs past the window; "
                                     "it neither fired nor resolved - look at it before going on"
                                     % (self.clock() - started, "; ".join(describe_alert(a) for a in self.pending),
                                        self.clock() - started - self.p["seconds"]),
                                     polls=self.polls, lines=self.lines)
            self.sleep(max(0.0, min(every, deadline - self.clock())))
            self.poll_prometheus(self.clock() - started)

    def run(self):
        window, every = self.p["seconds"], max(self.p["poll"], 0.1)
        durations = self.preflight() if self.prom is not None else {}
        started = self.clock()
        poll = self.poll_prometheus if self.prom is not None else self.poll_jetstream
        k = 0
        while True:
            poll(self.clock() - started)
            k += 1
            if self.clock() - started >= window:
                break
            # polls on a clock: a slow poll shortens the next wait, the last one lands on the window's end
            self.sleep(max(0.0, min(started + k * every, started + window) - self.clock()))
        if self.prom is not None:
            self.blind_at_end(window, every)
            self.settle(started, every, durations)
        return dict(changed=False, seconds=round(self.clock() - started, 1), polls=self.polls, lines=self.lines,
                    source="prometheus" if self.prom is not None else "jetstream")


def status_line(row):
    """'  4.0s lag AA_CORE_HOT/normalize-hrv-durable=3 error rate 0.0% stored 1140/min alerts none'."""
    if "unknown" in row:
        return "%5.1fs Prometheus not readable this poll: %s" % (row["elapsed"], row["unknown"])
    lag = ", ".join("%s=%g" % (k, v) for k, v in sorted(row["lag"].items()) if v is not None) or "-"
    line = "%5.1fs lag %s" % (row["elapsed"], lag)
    if "firing" in row:
        rate = "-" if row["error_rate"] is None else "%.1f%%" % (100.0 * row["error_rate"])
        stored = "-" if row["stored_per_min"] is None else "%g/min" % row["stored_per_min"]
        line += " error rate %s stored %s alerts %s" % (rate, stored, ", ".join(row["firing"]) or "none")
        if row.get("pending"):
            line += " (pending %s)" % ", ".join(row["pending"])
    return line


def run(module, js):
    """migration_soak: one soak window, Prometheus read over HTTP (http_client), progress lines to progress_file."""
    url = module.params["prometheus_url"]

    def fetch(target):
        try:
            with http_client.request(target, timeout=10) as resp:
                return resp.read()
        except Exception as exc:  # urllib raises many types; one line is what the operator needs
            raise JetStreamError("cannot read Prometheus at %s: %s" % (url, exc))

    def progress(line):
        try:
            with open(module.params["progress_file"], "a") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            raise JetStreamError("cannot write progress_file %s: %s" % (module.params["progress_file"], exc))

    if url and not module.params["status_queries"]:
        raise JetStreamError("status_queries is required with prometheus_url: pass "
                             "migration | athlete_ally.nats.migration_queries(migration_monitoring, migration_metrics, 'status')")
    return Soak(js, module.params, Prometheus(url, fetch) if url else None,
                progress=progress if module.params["progress_file"] else None).run()
