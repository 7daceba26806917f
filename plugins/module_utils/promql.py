# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Every PromQL expression the collection uses, rendered from inventory data (docs/MONITORING.md).

``migration_metrics`` (inventory) says which JetStream exporter production scrapes - ``nats-surveyor`` or
``prometheus-nats-exporter``, whose metric and label names differ (checked in their sources: surveyor
``surveyor/collector_statz.go``, prometheus-nats-exporter ``collector/jsz.go``) - and which counters the service
exposes (its contract). The alert rules, the soak's status queries and pre-checks, the messages' metrics, the
dashboard and the report all come from :class:`Promql`, so a name is written once and the error rate exists once.
Bad inventory data raises ValueError with one line naming the key."""

from __future__ import annotations

import json
import re

# Names and labels per exporter. ``source_lag`` None: the exporter does not report a stream's sources.
CONVENTIONS = {
    "nats-surveyor": dict(
        pending="nats_consumer_num_pending", ack_pending="nats_consumer_num_ack_pending",
        redelivered="nats_consumer_num_redelivered", messages="nats_stream_total_messages",
        last_seq="nats_stream_last_seq", source_lag=None,
        stream="stream", consumer="consumer_name", source=None),
    "prometheus-nats-exporter": dict(
        pending="jetstream_consumer_num_pending", ack_pending="jetstream_consumer_num_ack_pending",
        redelivered="jetstream_consumer_num_redelivered", messages="jetstream_stream_total_messages",
        last_seq="jetstream_stream_last_seq", source_lag="jetstream_stream_source_lag",
        stream="stream_name", consumer="consumer_name", source="source_name"),
}
# lab/exporter.py's journal series (docs/JOURNAL.md): only with migration_metrics.journal_exporter.
JOURNAL_TS = "aa_migration_journal_timestamp_seconds"
MISROUTED = "aa_migration_legacy_misrouted"
RUNBOOK_LABEL = {"runbook": "phase2-migration"}
GROUP = "phase2-migration"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _counter(value, key):
    """{name, labels} of a counter given as a name or {name, labels}."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not _NAME.match(str(value.get("name", ""))):
        raise ValueError("%s must be a metric name or {name: ..., labels: {...}}, got %r" % (key, value))
    labels = value.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError("%s.labels must be a dict, got %r" % (key, labels))
    return {"name": value["name"], "labels": {str(k): str(v) for k, v in labels.items()}}


def selector(name, labels=None, regex=None):
    """``name{k="v",k2=~"a|b"}``: ``labels`` exact, ``regex`` =~ (values JSON-quoted, as PromQL reads them)."""
    parts = ["%s=%s" % (k, json.dumps(v)) for k, v in sorted((labels or {}).items())]
    parts += ["%s=~%s" % (k, json.dumps(v)) for k, v in sorted((regex or {}).items())]
    return name + ("{%s}" % ",".join(parts) if parts else "")


def metrics_config(metrics):
    """migration_metrics checked, with defaults: {exporter, names (CONVENTIONS entry), service, journal_exporter}."""
    metrics = metrics or {}
    if not isinstance(metrics, dict):
        raise ValueError("migration_metrics must be a dict (exporter, service), got %r" % (metrics,))
    exporter = metrics.get("exporter", "nats-surveyor")
    if exporter not in CONVENTIONS:
        raise ValueError("migration_metrics.exporter must be one of %s, got %r"
                         % (", ".join(sorted(CONVENTIONS)), exporter))
    service = metrics.get("service")
    if not isinstance(service, dict):
        raise ValueError("migration_metrics.service must say which counters the service exposes "
                         "(handled, processed, stored): see docs/MONITORING.md")
    handled = _counter(service.get("handled"), "migration_metrics.service.handled")
    result = str(service.get("result_label", "result"))
    errors = service.get("errors", ["retry", "dlq"])
    if not isinstance(errors, list) or not errors:
        raise ValueError("migration_metrics.service.errors must be a non-empty list of %s values, got %r"
                         % (result, errors))
    return dict(exporter=exporter, names=CONVENTIONS[exporter], journal_exporter=bool(metrics.get("journal_exporter")),
                handled=handled, result=result, errors=[str(e) for e in errors],
                success=str(service.get("success", "success")),
                processed=_counter(service.get("processed", service.get("handled")),
                                   "migration_metrics.service.processed"),
                stored=_counter(service.get("stored"), "migration_metrics.service.stored"),
                duplicates=_counter(service["duplicates"], "migration_metrics.service.duplicates")
                if service.get("duplicates") else None)


def _alt(values):
    """Alternatives of a PromQL (RE2) regex: metacharacters escaped, names' hyphens and underscores left readable."""
    return "|".join(re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", v) for v in values)


class Promql(object):
    """The expressions of one inventory: ``migration`` (streams, groups, consumers), ``monitoring``
    (migration_monitoring: windows, thresholds) and ``metrics`` (migration_metrics)."""

    def __init__(self, migration, monitoring=None, metrics=None):
        self.m = migration
        self.mon = monitoring or {}
        self.c = metrics_config(metrics)
        self.n = self.c["names"]
        groups = migration.get("groups") or []
        self.group_streams = [g["stream"] for g in groups]
        self.app_streams = [migration["legacy"]["stream"]] + self.group_streams
        self.consumers = sorted({c["name"] for g in groups for c in g.get("consumers") or []})
        self.dlq = migration["dlq"]["stream"]

    # -- building blocks ------------------------------------------------------------------------------------
    def _sel(self, counter, extra=None, regex=None):
        return selector(counter["name"], dict(counter["labels"], **(extra or {})), regex)

    def consumer_series(self, metric, consumers=None):
        """Selector of a consumer metric for the migration's consumers (or the given STREAM/durable pairs)."""
        name, s, c = self.n[metric], self.n["stream"], self.n["consumer"]
        if consumers:
            return " or ".join(selector(name, {s: st, c: co}) for st, co in consumers)
        return selector(name, regex={c: _alt(self.consumers)})

    def stream_series(self, metric, streams):
        return selector(self.n[metric], regex={self.n["stream"]: _alt(streams)})

    def per_consumer(self, inner):
        return "max by (%s, %s) (%s)" % (self.n["stream"], self.n["consumer"], inner)

    def moving(self, metric, window):
        """Consumers whose ``metric`` changed within ``window``: one nobody reads and nobody feeds (a cut-over
        group's consumer left on the legacy stream, kept for a rollback) holds a frozen backlog that is not lag."""
        return self.per_consumer("changes(%s[%s])" % (self.consumer_series(metric), window)) + " > 0"

    def live(self, metric, window):
        """Per consumer ``metric`` of the consumers it moved for (standard exporters only; no lab-only series)."""
        per_consumer = self.per_consumer(self.consumer_series(metric))
        return "(%s and on(%s, %s) (%s))" % (per_consumer, self.n["stream"], self.n["consumer"],
                                             self.moving(metric, window))

    def error_ratio(self, window):
        """The runbook's error rate: (retry + dlq) / everything handled, over ``window``. The only copy."""
        h = self.c["handled"]
        return "sum(rate(%s[%s])) / sum(rate(%s[%s]))" % (
            self._sel(h, regex={self.c["result"]: _alt(self.c["errors"])}), window, self._sel(h), window)

    def success_rate(self, window):
        return "sum(rate(%s[%s]))" % (self._sel(self.c["handled"], {self.c["result"]: self.c["success"]}), window)

    def processed_per_min(self, window):
        return "sum(rate(%s[%s])) * 60" % (self._sel(self.c["processed"]), window)

    def stored_per_min(self, window):
        return "sum(rate(%s[%s])) * 60" % (self._sel(self.c["stored"]), window)

    def lag_total(self, window):
        return "sum(%s)" % self.live("pending", window)

    def dlq_messages(self):
        return selector(self.n["messages"], {self.n["stream"]: self.dlq})

    def traffic_min(self):
        """Messages the app's streams must have stored in traffic_lookback for the "no traffic" alerts to apply
        (default 0): above the migration's own verification and probe events, which an idle lab otherwise counts."""
        value = self.mon.get("traffic_min", 0)
        try:
            number = None if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or number < 0:
            raise ValueError("migration_monitoring.traffic_min must be a number of messages (0 or more), got %r"
                             % (value,))
        return int(number) if number == int(number) else number

    def traffic_before(self, window, lookback, streams=None, by_stream=False):
        inner = "max by (%s) (increase(%s[%s] offset %s))" % (
            self.n["stream"], self.stream_series("last_seq", streams or self.app_streams), lookback, window)
        return inner if by_stream else "sum(%s)" % inner

    # -- the alert rules ----------------------------------------------------------------------------------------
    def rules(self):
        """[(comment, rule dict)] of the migration's alert group."""
        r, mon = self.mon["rules"], self.mon
        S, C = self.n["stream"], self.n["consumer"]
        look = mon["traffic_lookback"]
        floor = self.traffic_min()
        out = []

        sd = r["stream_down"]
        w = sd["window"]
        per_stream = "max by (%s) (increase(%s[%s]))" % (S, self.stream_series("last_seq", self.group_streams), w)
        all_streams = "sum(max by (%s) (increase(%s[%s])))" % (S, self.stream_series("last_seq", self.app_streams), w)
        out.append((
            "Runbook: \"Stream down | No messages for 10m | P1\". Per stream for the groups' streams (each stores its "
            "group's subjects, sourced before its cut-over), guarded by traffic on that stream before; the legacy "
            "stream only as part of all the app's streams, since after the last cut-over it stores nothing by design.",
            dict(alert="NatsStreamDown",
                 expr="(%s == 0\n  and on(%s) %s > %s)\nor on()\n(%s == 0\n  and on() %s > %s)" % (
                     per_stream, S, self.traffic_before(w, look, self.group_streams, by_stream=True), floor,
                     all_streams, self.traffic_before(w, look), floor),
                 **{"for": sd["for"]}, severity=sd["severity"],
                 summary="No message stored in {{ if $labels.%s }}{{ $labels.%s }}{{ else }}any of %s{{ end }} for %s"
                         % (S, S, ", ".join(self.app_streams), w),
                 action="Immediate rollback (playbooks/rollback.yml)")))

        cl = r["consumer_lag"]
        lw = cl.get("window", cl["for"])
        out.append((
            "Runbook: \"Consumer lag | num_pending > 100 | P2\" (for > 10 minutes). max by: surveyor reports one series "
            "per replica. Only consumers whose backlog moved in the window: a cut-over group's consumer left on the "
            "legacy stream is read and fed by nobody, its frozen backlog is no lag (and it moves again after a rollback).",
            dict(alert="NatsConsumerLag",
                 expr="%s > %s\nand on(%s, %s) %s" % (
                     self.per_consumer(self.consumer_series("pending")), cl["threshold"], S, C, self.moving("pending", lw)),
                 **{"for": cl["for"]}, severity=cl["severity"],
                 summary="{{ $labels.%s }}/{{ $labels.%s }} has {{ $value }} pending (limit %s)" % (S, C, cl["threshold"]),
                 action="Investigate, scale up")))

        er = r["error_rate"]
        out.append((
            "Runbook: \"High error rate | Errors > 10% | P2\" on the service's handled-messages counter.",
            dict(alert="NormalizeHighErrorRate", expr="%s > %s" % (self.error_ratio(mon["rate_window"]), er["threshold"]),
                 **{"for": er["for"]}, severity=er["severity"],
                 summary="{{ $value | humanizePercentage }} of the handled messages failed (limit %s)" % er["threshold"],
                 action="Check logs, DLQ")))

        db = r["db_disconnect"]
        w = db["window"]
        out.append((
            "Runbook: \"DB disconnect | Inserts = 0 for 10m | P1\". Stored messages are the service contract's counter "
            "(migration_metrics.service.stored: a success is a committed row); only while work waits (pending or "
            "unacknowledged on a consumer that moved), so an idle service is quiet.",
            dict(alert="NormalizeDbDisconnect",
                 expr="(sum(increase(%s[%s])) or on() vector(0)) == 0\nand on() (\n  (sum(%s) or on() vector(0))\n"
                      "  + (sum(%s) or on() vector(0))\n) > 0" % (
                          self._sel(self.c["stored"]), w, self.live("pending", w), self.live("ack_pending", w)),
                 **{"for": db["for"]}, severity=db["severity"],
                 summary="No message stored for %s while messages wait" % w, action="Check DB, rollback")))

        mr = r["message_rate"]
        w = mr["window"]
        out.append((
            "Runbook \"Message Processing Rate\": below 1/min for > 5 minutes, if there was traffic before.",
            dict(alert="NormalizeLowMessageRate",
                 expr="(%s or on() vector(0)) * 60 < %s\nand on() %s > %s" % (
                     self.success_rate(w), mon["message_rate_per_min"], self.traffic_before(w, look), floor),
                 **{"for": mr["for"]}, severity=mr["severity"],
                 summary="Processing below %s/min" % mon["message_rate_per_min"],
                 action="Check the service's bindings and logs")))

        if self.c["journal_exporter"]:
            lm = r["legacy_misrouted"]
            out.append((
                "Migration (journal exporter, lab/exporter.py): a cut-over group's subject stored on the legacy stream "
                "after its cut-over seq.",
                dict(alert="MigrationLegacyStillStoring", expr="max by (stream, phase, group) (%s) == 1" % MISROUTED,
                     **{"for": lm["for"]}, severity=lm["severity"],
                     summary="{{ $labels.stream }} stored a message of group {{ $labels.group }} "
                             "(phase {{ $labels.phase }}) after its cut-over",
                     action="Find the publisher; do not delete the legacy stream (phase 3)")))

        dg = r["dlq_growing"]
        out.append((
            "Migration: dead letters keep arriving (max by stream: once per stream, not per replica; the delta nets "
            "out the phase 0 test message, which is purged again).",
            dict(alert="MigrationDlqGrowing",
                 expr="max by (%s) (delta(%s[%s])) > %s" % (S, self.dlq_messages(), dg["window"], dg["threshold"]),
                 **{"for": dg["for"]}, severity=dg["severity"],
                 summary="%s grew by {{ $value }} in %s" % (self.dlq, dg["window"]), action="Check logs, DLQ")))

        if self.n["source_lag"]:
            sl = r["source_lag"]
            by = "max by (%s, %s)" % (S, self.n["source"])
            out.append((
                "Migration: a shadow source (a group's stream sourcing the legacy one) is behind and not catching up.",
                dict(alert="MigrationSourceLagNotShrinking",
                     expr="%s (%s) > %s\nand %s (delta(%s[%s])) >= 0" % (
                         by, self.n["source_lag"], sl["threshold"], by, self.n["source_lag"], sl["window"]),
                     **{"for": sl["for"]}, severity=sl["severity"],
                     summary="{{ $labels.%s }} source {{ $labels.%s }} is {{ $value }} behind and not catching up"
                             % (S, self.n["source"]),
                     action="Check the cluster; the cut-over waits for the catch-up")))
        return out

    def rules_yaml(self):
        """The rules file's body (comments kept: YAML dumpers drop them)."""
        lines = ["groups:", "  - name: %s" % GROUP, "    rules:"]
        for comment, rule in self.rules():
            lines += ["      # " + part for part in _wrap(comment, 110)]
            lines += ["      - alert: %s" % rule["alert"], "        expr: |-"]
            lines += ["          " + line for line in rule["expr"].splitlines()]
            lines += ["        for: %s" % rule["for"],
                      "        labels: {severity: %s, runbook: %s}" % (rule["severity"], RUNBOOK_LABEL["runbook"]),
                      "        annotations:",
                      "          summary: %s" % json.dumps(rule["summary"], ensure_ascii=False),
                      "          action: %s" % json.dumps(rule["action"], ensure_ascii=False), ""]
        return "\n".join(lines).rstrip() + "\n"

    def alert_names(self):
        return [rule["alert"] for _c, rule in self.rules()]

    def required_series(self, existing=None):
        """[(what, selector, if_traffic)] every rule reads, that must exist before a soak window means anything.
        The service's counters carry labels, so they have no series before the first message is handled: they are
        required once the app's streams stored something in the traffic lookback (``traffic_query``). With
        ``existing`` (the stream names there are now), a stream that does not exist yet (the DLQ before phase 0,
        at preflight) has no series to require."""
        dlq = [] if existing is not None and self.dlq not in existing else [
            ("the exporter's DLQ stream messages", self.dlq_messages(), False)]
        exporter = [("the exporter's stream last sequence", self.stream_series("last_seq", self.app_streams), False),
                    ("the exporter's consumer pending", self.consumer_series("pending"), False),
                    ("the exporter's consumer ack pending", self.consumer_series("ack_pending"), False)]
        service = [("the service's handled counter", self._sel(self.c["handled"]), True),
                   ("the service's stored counter", self._sel(self.c["stored"]), True)]
        out = exporter + dlq + service
        # the journal exporter's misrouting gauge has series only for groups already cut over: nothing to require
        return out

    def traffic_query(self):
        return "sum(max by (%s) (increase(%s[%s])))" % (
            self.n["stream"], self.stream_series("last_seq", self.app_streams), self.mon.get("traffic_lookback", "1h"))

    # -- status lines, messages, report ---------------------------------------------------------------------------
    def status_queries(self, window, consumers=None):
        """The soak's status line: lag per watched consumer (STREAM/durable pairs; all the migration's if none),
        error rate, stored messages per minute."""
        return dict(lag=self.per_consumer(self.consumer_series("pending", consumers)),
                    lag_labels=[self.n["stream"], self.n["consumer"]],
                    error_rate=self.error_ratio(window), stored_per_min=self.stored_per_min(window))

    def message_queries(self, window):
        """The status message's metrics, in the template's order."""
        return dict(rate=self.processed_per_min(window), lag=self.lag_total(window),
                    error_rate=self.error_ratio(window), writes=self.stored_per_min(window))

    def report_queries(self, window):
        S, C = self.n["stream"], self.n["consumer"]
        out = dict(processed=self.processed_per_min(window) + " / 60",
                   lag=self.per_consumer(self.consumer_series("pending")),
                   error_rate=self.error_ratio(window),
                   dlq="max by (%s) (%s)" % (S, self.dlq_messages()),
                   alerts='max by (alertname, alertstate) (ALERTS{runbook="%s"})' % RUNBOOK_LABEL["runbook"])
        if self.c["journal_exporter"]:
            out["cutovers"] = 'max by (stream, phase) (%s{event="cutover_at"})' % JOURNAL_TS
        out["labels"] = {"stream": S, "consumer": C}
        return out

    def dashboard_panels(self, window):
        """[(title, unit, [(PromQL, legend)])] of the Grafana dashboard."""
        S, C = self.n["stream"], self.n["consumer"]
        h = self.c["handled"]
        panels = [
            ("Message processing rate per stream (runbook 1)", "reqps", [
                ("sum(rate(%s[%s])) by (stream)" % (self._sel(h, {self.c["result"]: self.c["success"]}), window),
                 "handled ok {{stream}}"),
                ("sum(rate(%s[%s])) by (stream)" % (self._sel(self.c["processed"]), window), "processed {{stream}}"),
            ]),
            ("Consumer lag (runbook 2)", "short", [
                (self.per_consumer(self.consumer_series("pending")), "{{%s}}/{{%s}}" % (S, C)),
            ]),
            ("Error rate (runbook 3)", "percentunit", [
                (self.error_ratio(window), "%s share" % " + ".join(self.c["errors"])),
            ]),
            ("Dead letters (%s)" % self.dlq, "short", [("max by (%s) (%s)" % (S, self.dlq_messages()), "stored")]),
            ("Database inserts (runbook 4): stored messages", "short", [
                (self.stored_per_min(window), "stored/min"),
            ] + ([("sum(rate(%s[%s])) * 60" % (self._sel(self.c["duplicates"]), window), "duplicate deliveries/min")]
                 if self.c["duplicates"] else [])),
        ]
        if self.n["source_lag"]:
            panels.append(("Shadow source lag", "short", [
                ("max by (%s, %s) (%s)" % (S, self.n["source"], self.n["source_lag"]),
                 "{{%s}} <- {{%s}}" % (S, self.n["source"]))]))
        return panels


def _wrap(text, width):
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = (line + " " + word).strip()
    return out + ([line] if line else [])
