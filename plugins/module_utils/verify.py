# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""One verification event (runbook Steps 1.5 / 1.7 / 2.5-2.6 / 2.8-2.9), its evidence gathered in one module run.

1. Send the event through the ingest HTTP API (``ingest_url`` + ``ingest_path``), or publish it straight to NATS on
   ``subject`` with the event id as ``Nats-Msg-Id`` (the fallback, named in ``path``). HTTP 200, 400 and 503 are
   answers the playbook's assert judges; anything else, or no answer, fails in one line. An event that was not
   accepted (not 200) or not stored by ``expected_stream`` ends the run here: the rest would only wait for it.
2. With ``row`` (the group's ``verify.row``, docs/SERVICE_CONTRACT.md): wait for its database row (the service
   writes it before it acks), bounded by ``stall_timeout``, and compare each ``row.match`` column with the event's
   field and ``row.check`` (an SQL predicate) on it. Before the cut-over the event reaches the new stream through
   its source, whose copy can lag (a leader election on either stream): a drained consumer proves nothing until
   the copy arrived, so the row comes first.
3. Find the event in the new stream ``stream`` (the source's copy before the cut-over, the stored message after
   it): the proof for a group that nobody consumes yet, and cheap for the others.
4. Wait until the new stream's ``consumers`` processed it (module_utils/drain.py): after the cut-over until the
   ack floor passes the event's own seq (one reading); before it (a sourced copy has no known seq) a full drain
   with stable polls.
5. After the cut-over only: sum ``metric`` (when the group names one) with ``metric_labels`` in the service's /metrics text
   (module_utils/prometheus.py), and read the migration state (module_utils/migration_state.py) for "the legacy
   stream took nothing".

The playbook asserts on what this returns; a wait that runs out fails with one line naming what was awaited and
the last state seen, the evidence gathered so far in the failed result (like a kubernetes.core wait).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import time
from urllib.error import HTTPError

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.athlete_ally.nats.plugins.module_utils import (
    drain, durations, http_client, migration_state, prometheus, publish, service_contract)
from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import fmt_seconds
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import ApiError, JetStreamError

# The statuses of the ingest API that are answers (judged by the playbook's assert), as the uri task accepted.
ANSWER_STATUSES = (200, 400, 503)
FALLBACK_PATH = "direct NATS publish (fallback)"
ROW_POLL_SECONDS = 0.25
NO_MESSAGE_FOUND = 10037  # JSNoMessageFoundErr: STREAM.MSG.GET found nothing at or after the seq
DEFAULT_REPLY = {"stream_field": "stream", "seq_field": "seq"}
PUBLISH_RETRIES = 10
# After the cut-over the event's own seq is known and the condition cannot revert: one reading, polled quickly.
UNTIL_SEQ_POLL = "250ms"


def path_of(ingest_url, ingest_path):
    """How the event is sent, as the output and the journal say it."""
    return "ingest API %s" % ingest_path if ingest_url else FALLBACK_PATH


def make_event(event, event_id, field):
    """The event as sent: ``event`` with its id under ``field``."""
    return dict(event or {}, **{field: event_id})


def ack_of(body, reply=None):
    """``{stream, seq[, duplicate]}`` from the front door's answer, read from the fields the contract names
    (``service_contract.reply``); a missing field is None. A body that is no JSON object is kept as ``answer``."""
    fields = dict(DEFAULT_REPLY, **(reply or {}))
    if not isinstance(body, dict):
        return {} if body in (None, "") else {"answer": body}
    ack = {"stream": body.get(fields["stream_field"]), "seq": body.get(fields["seq_field"])}
    if fields.get("duplicate_field"):
        ack["duplicate"] = body.get(fields["duplicate_field"])
    return ack


def accepted(status, ack, expected_stream):
    """Accepted (HTTP 200) and stored by the expected stream: what the playbook's first assert checks."""
    return int(status) == 200 and isinstance(ack, dict) and ack.get("stream") == expected_stream


def jsonable(value):
    """A database value as JSON can carry it (numeric -> float, dates -> ISO text)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return value


def rows_as_dicts(columns, rows):
    return [dict(zip(columns, (jsonable(v) for v in row))) for row in rows]


class _Options(object):
    """What module_utils/drain.py and publish.py read from a module: its params and check_mode."""

    def __init__(self, params):
        self.params = params
        self.check_mode = False


class Database(object):
    """The row read with psycopg2, one connection kept while the row is polled (reconnected after an error)."""

    def __init__(self, host, port, user, password, name, connect_timeout=10):
        self.options = dict(host=host, port=port, user=user, password=password, dbname=name,
                            connect_timeout=connect_timeout)
        self.where = "%s@%s:%s/%s" % (user, host, port, name)
        self.conn = None

    def query(self, sql, args):
        if self.conn is None:
            psycopg2 = import_psycopg2()
            self.conn = psycopg2.connect(**dict((k, v) for k, v in self.options.items() if v not in (None, "")))
            self.conn.autocommit = True
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, args)
                return rows_as_dicts([d[0] for d in cur.description], cur.fetchall())
        except Exception:
            self.close()
            raise

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing is best effort
                pass
            self.conn = None


def import_psycopg2():
    """psycopg2, imported when a row is first read (runs that read none do not pay for it), or one line."""
    try:
        import psycopg2
    except ImportError:
        raise JetStreamError(missing_required_lib("psycopg2", reason="to read the verification row "
                                                  "(pip install psycopg2-binary where the task runs)"))
    return psycopg2


def transient_db_errors():
    """Database errors a row poll rides out (server restarting, connection refused) until its bound: psycopg2's
    when it is installed (else no row is ever read, and the first read says so)."""
    try:
        import psycopg2
    except ImportError:
        return ()
    return (psycopg2.OperationalError, psycopg2.InterfaceError)


class Verify(object):
    """``http(method, url, body, timeout) -> (status, text)`` and ``query(sql, args) -> [row dicts]`` are passed
    in (the module gives http_request and psycopg2; unit tests give fakes); NATS goes through ``js``."""

    def __init__(self, params, js, http, query, sleep=time.sleep, clock=time.monotonic, transient=None):
        p = params
        self.p = p
        self.js = js
        self.http = http
        self.query = query
        self.sleep = sleep
        self.clock = clock
        self.transient = transient  # None: psycopg2's, looked up when a row is read (wait_row)
        self.after = p["expected_stream"] == p["stream"]
        self.stall_timeout = durations.wait_seconds(p["stall_timeout"], "stall_timeout", allow_zero=False)
        for option in ("drain_timeout", "poll_interval"):  # the drain's own; checked before the event is sent
            durations.wait_seconds(p[option], option, allow_zero=False)
        self.row = p.get("row") or None
        if self.row:
            try:
                self.row_sql = service_contract.row_query(self.row)[0]
            except (KeyError, ValueError) as exc:
                raise JetStreamError("row must be {table, key_column, match: {column: field}} of SQL identifiers: %s"
                                     % exc)
        if not p.get("ingest_url") and not p.get("subject"):
            raise JetStreamError("without ingest_url the event is published straight to NATS: set subject")
        if self.after and p.get("metric") and not p.get("metrics_url"):
            raise JetStreamError("after the cut-over (expected_stream == stream) the metric is read: set metrics_url")
        if self.after and not p.get("legacy_stream"):
            raise JetStreamError("after the cut-over the legacy stream is read: set legacy_stream and groups")
        self.event = make_event(p["event"], p["event_id"], p["event_id_field"])
        self.out = dict(changed=False, event_id=p["event_id"], event=self.event, after=self.after,
                        path=path_of(p.get("ingest_url"), p.get("ingest_path")), status=None, ack={},
                        response=None, accepted=False, rows=[], row=None, row_mismatches=[], reply_errors=[],
                        in_stream=None, processed=[], metric=None, metric_labels=p.get("metric_labels") or {},
                        migration=None, waited={})
        self.start_seq = 0

    # -- the steps -------------------------------------------------------------------------
    def send(self):
        p = self.p
        if p.get("ingest_url"):
            url = p["ingest_url"].rstrip("/") + "/" + (p.get("ingest_path") or "").lstrip("/")
            status, text = self.http("POST", url, json.dumps(self.event), p["http_timeout"])
            if status not in ANSWER_STATUSES:
                raise JetStreamError("the ingest API answered POST %s with HTTP %s (expected one of %s): %s"
                                     % (url, status, ", ".join(str(s) for s in ANSWER_STATUSES),
                                        " ".join(str(text or "").split())[:300]), **self.out)
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = text
            self.out.update(changed=True, status=status, response=body, ack=ack_of(body, p.get("reply")))
            if status == 200:
                self.out["reply_errors"] = service_contract.reply_errors(
                    "front door POST %s" % url, body, {"reply": dict(DEFAULT_REPLY, **(p.get("reply") or {}))})
        else:
            opts = _Options(dict(subject=p["subject"], payload=None, payload_json=self.event, headers={},
                                 msg_id=p["event_id"], expected_stream=None, retries=PUBLISH_RETRIES,
                                 retry_delay=0.25, retry_max_delay=5.0))
            try:
                res = publish.publish(opts, self.js, sleep=self.sleep)
            except JetStreamError as exc:
                raise JetStreamError("verification event %s: %s" % (p["event_id"], exc), **self.out)
            self.out.update(changed=not res["ack"]["duplicate"], status=200, response=res["ack"], ack=res["ack"])
        self.out["accepted"] = accepted(self.out["status"], self.out["ack"], p["expected_stream"])
        if self.out["accepted"] and self.after and not isinstance(self.out["ack"].get("seq"), int):
            raise JetStreamError("verification event %s: %s stored it but the answer carries no seq to wait for: %s"
                                 % (p["event_id"], p["expected_stream"], self.out["response"]), **self.out)
        return self.out["accepted"]

    def mark_stream(self):
        """The new stream's last seq before the send: the event's copy lands after it."""
        info = self.js.stream_info(self.p["stream"])
        if info is None:
            raise JetStreamError("verification event %s: stream %s does not exist; it must before the group is "
                                 "verified" % (self.p["event_id"], self.p["stream"]), **self.out)
        self.start_seq = int((info.get("state") or {}).get("last_seq") or 0)

    def _is_event(self, message):
        """Whether a STREAM.MSG.GET message is the event: its id in the body or as its Nats-Msg-Id."""
        try:
            data = json.loads(base64.b64decode(message.get("data") or ""))
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get(self.p["event_id_field"]) == self.p["event_id"]:
            return True
        headers = base64.b64decode(message.get("hdrs") or "").decode("utf-8", "replace")
        return any(line.split(":", 1)[0].strip().lower() == "nats-msg-id"
                   and line.split(":", 1)[1].strip() == self.p["event_id"]
                   for line in headers.splitlines() if ":" in line)

    def wait_in_stream(self):
        """Scan the new stream's messages on the event's subject after the mark until the event is there."""
        p = self.p
        subject = p["subject"]
        start, seq = self.clock(), self.start_seq + 1
        if self.after and isinstance(self.out["ack"].get("seq"), int):
            seq = max(seq, self.out["ack"]["seq"])  # stored by the new stream itself: it is at that seq
        api = "STREAM.MSG.GET.%s" % p["stream"]
        while True:
            try:
                message = self.js.request(api, {"seq": seq, "next_by_subj": subject}).get("message") or {}
            except ApiError as exc:
                if exc.err_code != NO_MESSAGE_FOUND:
                    raise JetStreamError("verification event %s: reading %s: %s" % (p["event_id"], p["stream"], exc),
                                         **self.out)
                message = None
            if message and self._is_event(message):
                self.out["in_stream"] = {"stream": p["stream"], "seq": message.get("seq"),
                                         "subject": message.get("subject")}
                self.out["waited"]["in_stream"] = round(self.clock() - start, 3)
                return
            if message:  # another message on the subject: look after it
                seq = int(message.get("seq") or seq) + 1
                continue
            waited = self.clock() - start
            if waited >= self.stall_timeout:
                self.out["waited"]["in_stream"] = round(waited, 3)
                raise JetStreamError(
                    "verification event %s: not in %s on %s within stall_timeout=%ss (looked from seq %d); %s"
                    % (p["event_id"], p["stream"], subject, fmt_seconds(self.stall_timeout), self.start_seq + 1,
                       "check the stream's source from the legacy stream" if not self.after
                       else "check which stream holds the subject"), **self.out)
            self.sleep(min(ROW_POLL_SECONDS, max(0.0, self.stall_timeout - waited)))

    def wait_row(self):
        p = self.p
        sql, args = self.row_sql, {"id": p["event_id"]}
        transient = transient_db_errors() if self.transient is None else self.transient
        start = self.clock()
        last_error = None
        while True:
            try:
                rows = self.query(sql, args)
                last_error = None
            except transient as exc:
                rows, last_error = [], " ".join(str(exc).split())
            waited = self.clock() - start
            if rows:
                self.out.update(rows=rows, row=rows[0],
                                row_mismatches=service_contract.row_mismatches(self.row, rows[0], self.event))
                self.out["waited"]["row"] = round(waited, 3)
                return rows
            if waited >= self.stall_timeout:
                self.out["waited"]["row"] = round(waited, 3)
                last = ("last read failed: %s" % last_error) if last_error else "no row yet"
                raise JetStreamError(
                    "verification event %s: no %s row within stall_timeout=%ss (the service writes it before it "
                    "acks; %s; consumers on %s: %s); check the service and its database, or raise stall_timeout"
                    % (p["event_id"], self.row["table"], fmt_seconds(self.stall_timeout), last, p["stream"],
                       self._consumers_text()), last_error=last_error, **self.out)
            self.sleep(min(ROW_POLL_SECONDS, max(0.0, self.stall_timeout - waited)))

    def _consumers_text(self):
        """The group's consumers as last seen, for a failure line (best effort: the line must still be written)."""
        parts = []
        for name in self.p["consumers"]:
            try:
                info = self.js.consumer_info(self.p["stream"], name)
            except JetStreamError as exc:
                parts.append("%s: unreadable (%s)" % (name, exc))
                continue
            if info is None:
                parts.append("%s: missing" % name)
                continue
            c = drain.counts(info)
            parts.append("%s: pending=%d ack_pending=%d delivered.stream_seq=%d ack_floor.stream_seq=%d"
                         % (name, c["num_pending"], c["num_ack_pending"], c["delivered"]["stream_seq"],
                            c["ack_floor"]["stream_seq"]))
        return "; ".join(parts) or "none named"

    def drain_options(self, consumer):
        until = self.out["ack"]["seq"] if self.after else None
        return dict(stream=self.p["stream"], consumer=consumer, until_stream_seq=until,
                    stable_polls=1 if self.after else self.p["stable_polls"],
                    poll_interval=UNTIL_SEQ_POLL if self.after else self.p["poll_interval"],
                    timeout=self.p["drain_timeout"], stall_timeout=self.p["stall_timeout"], progress_file=None)

    def wait_processed(self):
        start = self.clock()
        for name in self.p["consumers"]:
            waiter = drain.Drain(_Options(self.drain_options(name)), self.js,
                                 option_names=dict(timeout="drain_timeout"))
            try:
                res = waiter.run()
            except JetStreamError as exc:
                self.out["processed"].append(self._processed(exc.result))
                raise JetStreamError("verification event %s: waiting until %s processed it: %s"
                                     % (self.p["event_id"], self.p["stream"], exc), **self.out)
            self.out["processed"].append(self._processed(res))
        self.out["waited"]["processed"] = round(self.clock() - start, 3)

    @staticmethod
    def _processed(res):
        keep = ("consumer", "drained", "until_stream_seq", "initial", "final", "elapsed", "polls", "poll_errors",
                "last_poll_error")
        return dict((k, res.get(k)) for k in keep)

    def read_metric(self):
        p = self.p
        status, text = self.http("GET", p["metrics_url"], None, p["http_timeout"])
        if status != 200:
            raise JetStreamError("verification event %s: the metrics at %s answered HTTP %s"
                                 % (p["event_id"], p["metrics_url"], status), **self.out)
        try:
            self.out["metric"] = prometheus.prom_sum(text, p["metric"], p.get("metric_labels") or {})
        except ValueError as exc:
            raise JetStreamError("verification event %s: %s" % (p["event_id"], exc), **self.out)

    def read_legacy(self):
        self.out["migration"] = migration_state.read(self.js, self.p["legacy_stream"], self.p.get("groups") or [])

    # -- the whole run ---------------------------------------------------------------------
    def run(self):
        self.mark_stream()
        if not self.send():
            return self.out  # the playbook's first assert reports it with the runbook step
        if self.row:
            self.wait_row()
        if self.p.get("subject"):
            self.wait_in_stream()
        self.wait_processed()
        if self.after:
            if self.p.get("metric"):
                self.read_metric()
            self.read_legacy()
        return self.out


def http_request(method, url, body, timeout):
    """``(status, text)`` of one HTTP request (module_utils/http_client.py); an HTTP error status is an answer,
    no answer at all (refused, timed out, DNS) is one JetStreamError line."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        with http_client.request(url, method, body, headers, timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except HTTPError as exc:
        try:
            text = exc.read().decode("utf-8", "replace")
        except Exception:  # an error body that cannot be read is no reason to lose the status
            text = ""
        return exc.code, text
    except http_client.NO_ANSWER as exc:
        reason = getattr(exc, "reason", None) or exc
        raise JetStreamError("%s %s: no answer (%s); check the URL and that the service is up"
                             % (method, url, " ".join(str(reason).split())))


def run(module, js):
    """``action`` for runner.run_module: the verification over HTTP (http_client) and psycopg2."""
    p = module.params
    if module.check_mode:
        return dict(changed=False, event_id=p["event_id"], path=path_of(p.get("ingest_url"), p.get("ingest_path")),
                    msg="check mode: no verification event sent")
    db = Database(p["db_host"], p["db_port"], p["db_user"], p["db_password"], p["db_name"])
    try:
        return Verify(p, js, http_request, db.query).run()
    finally:
        db.close()
