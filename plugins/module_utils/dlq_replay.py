# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Replay dead letters: republish DLQ messages to their original subjects, then delete them from the DLQ.

Reading: ``STREAM.MSG.GET`` with ``next_by_subj`` walks the DLQ by sequence (one request per dead letter, gaps
skipped by the server). No consumer is created, so a killed run leaves nothing behind on the server, ``--check``
creates nothing, and each dead letter is addressed by the seq the delete needs. The walk ends at the DLQ's last
seq as read at the start: a replayed event that fails again is dead-lettered after it and waits for the next
run, instead of being replayed in a loop.

Idempotence: the republish carries ``Nats-Msg-Id`` = ``id_prefix`` + the dead letter's own identity (its
``identity_header``, else ``<dlq stream>:<seq>``). Not the original message id: the original publish is in the
target stream under that id, so within its duplicate window JetStream would acknowledge the replay as a duplicate
and store nothing - and the dead letter would be deleted, the event lost. A replay id is acknowledged as a
duplicate only when this dead letter was already replayed (a run killed between the ack and the delete), so a
duplicate ack is as good as a stored one: the delete follows. A re-run later than the target stream's duplicate
window after such a kill republishes once more; the service stores by event id, so that is a duplicate delivery,
not a second row.

A dead letter is deleted only after a stream other than the DLQ acknowledged its republish.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import re
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import ApiError, JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import to_nanos
from ansible_collections.athlete_ally.nats.plugins.module_utils.publish import backoff, parse_ack
from ansible_collections.athlete_ally.nats.plugins.module_utils.subjects import covered, overlap, subject_problem

try:
    from nats import errors as nats_errors
    RETRYABLE = (nats_errors.NoRespondersError, nats_errors.TimeoutError, asyncio.TimeoutError)
except ImportError:  # pragma: no cover - the runner reports the missing library
    RETRYABLE = (asyncio.TimeoutError,)

NO_MESSAGE_FOUND = 10037  # JSNoMessageFoundErr: nothing at or after the seq (or the seq is deleted)
MSG_ID = "Nats-Msg-Id"
LISTED_MAX = 200  # dead letters listed in the result (the counts cover all of them)


# -- pure helpers (unit-tested) -------------------------------------------------------------------------------
def parse_headers(hdrs_b64):
    """{name: value} from a STREAM.MSG.GET ``hdrs`` (base64 of ``NATS/1.0\\r\\nName: value\\r\\n...``); first value
    wins."""
    if not hdrs_b64:
        return {}
    text = base64.b64decode(hdrs_b64).decode("utf-8", "replace")
    out = {}
    for line in text.split("\r\n")[1:]:
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        out.setdefault(name.strip(), value.strip())
    return out


def header(headers, name):
    """The value of header ``name`` (case-insensitive: proxies and clients differ), or None."""
    if not name:
        return None
    low = name.lower()
    return next((v for k, v in headers.items() if k.lower() == low), None)


def parse_time(text):
    """An RFC 3339 time with up to nanoseconds (as the server writes ``time``) as an aware UTC datetime."""
    m = re.match(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", (text or "").strip())
    if not m:
        raise ValueError("not an RFC 3339 time: %r" % text)
    frac = (m.group(3) or "0")[:6].ljust(6, "0")
    zone = m.group(4) or "Z"
    zone = "+00:00" if zone == "Z" else (zone if ":" in zone else zone[:3] + ":" + zone[3:])
    return datetime.datetime.fromisoformat("%sT%s.%s%s" % (m.group(1), m.group(2), frac, zone)).astimezone(
        datetime.timezone.utc)


def parse_bound(value, option, now):
    """``since``/``up_to``: an RFC 3339 time, or a duration meaning that long before ``now``; None when unset."""
    if value in (None, ""):
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        pass
    try:
        nanos = to_nanos(value, option)
    except ValueError:
        raise JetStreamError("%s: %r is neither a time (2026-12-04T20:00:00Z) nor a duration before now (2h, 30m)"
                             % (option, value))
    return now - datetime.timedelta(microseconds=nanos // 1000)


def check_filters(params):
    """One line on the first wrong option, else None."""
    if not params.get("original_subject_header"):
        return ("original_subject_header is empty: set migration.dlq.replay.original_subject_header to the header "
                "naming a dead letter's original subject (docs/DLQ_REPLAY.md)")
    for i, pattern in enumerate(params.get("subjects") or []):
        problem = subject_problem(pattern)
        if problem:
            return "subjects[%d]: %s" % (i, problem)
    if params.get("reason") and not params.get("reason_header"):
        return "reason: filtering by failure reason needs reason_header (migration.dlq.replay.reason_header)"
    if (params.get("max_messages") or 0) < 0:
        return "max_messages must be 0 (all) or more, got %s" % params["max_messages"]
    return None


def select(letter, filters):
    """(True, None) when the dead letter is to be replayed, else (False, why).

    ``letter``: {seq, time (datetime), headers, original_subject}. ``filters``: {subjects, since, until, reason,
    reason_header, dlq_subjects} (``until`` from the option ``up_to``)."""
    subject = letter.get("original_subject")
    if not subject:
        return False, "no original subject header"
    if subject_problem(subject) or not all(t not in ("*", ">") for t in subject.split(".")):
        return False, "original subject %r is not a publishable subject" % subject
    if any(overlap(subject, p) for p in filters.get("dlq_subjects") or []):
        return False, "original subject %s is captured by the DLQ itself" % subject
    if filters.get("subjects") and not covered(subject, filters["subjects"]):
        return False, "subject"
    if filters.get("since") and letter["time"] < filters["since"]:
        return False, "time"
    if filters.get("until") and letter["time"] > filters["until"]:
        return False, "time"
    if filters.get("reason"):
        why = header(letter["headers"], filters.get("reason_header")) or ""
        if filters["reason"].lower() not in why.lower():
            return False, "reason"
    return True, None


def replay_id(letter, stream, params):
    """The republish's Nats-Msg-Id: stable per dead letter, never the original publish's id (see module doc)."""
    own = header(letter["headers"], params.get("identity_header"))
    return "%s%s" % (params.get("id_prefix") or "", own or "%s:%s" % (stream, letter["seq"]))


def replay_headers(letter, msg_id, params):
    """The dead letter's headers without the failure headers, Nats-Msg-Id and Nats-Expected-*, plus the replay id."""
    drop = set(h.lower() for h in (params.get("strip_headers") or []))
    drop.update([MSG_ID.lower(), (params.get("original_subject_header") or "").lower(),
                 (params.get("reason_header") or "").lower()])
    out = dict((k, v) for k, v in letter["headers"].items()
               if k.lower() not in drop and not k.lower().startswith("nats-expected-"))
    out[MSG_ID] = msg_id
    return out


def _iso(when):
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if when else None


# -- the run ----------------------------------------------------------------------------------------------
class Replay(object):
    def __init__(self, module, js, sleep=time.sleep, now=None):
        self.p = module.params
        self.check = module.check_mode
        self.js = js
        self.sleep = sleep
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self.stream = self.p["stream"]
        self.counts = dict(scanned=0, matched=0, replayed=0, duplicates=0, deleted=0, unreplayable=0)
        self.listed = []
        self.unreplayable = []
        self.started = time.monotonic()
        self.seq = self.last_seq = 0

    def out(self, **extra):
        return dict(self.counts, stream=self.stream, check_mode=self.check, messages=self.listed,
                    unreplayable_seqs=self.unreplayable[:LISTED_MAX],
                    changed=bool(self.counts["deleted"] or self.counts["replayed"] or
                                 (self.check and self.counts["matched"])), **extra)

    def fail(self, msg):
        raise JetStreamError(msg, **self.out())

    def progress(self, last_seq, final=False):
        path = self.p.get("progress_file")
        every = max(1, self.p.get("progress_every") or 50)
        if not path or (not final and self.counts["matched"] % every):
            return
        line = ("%s stream=%s dlq_seq=%s/%s elapsed=%.1fs %s%s\n"
                % (_iso(datetime.datetime.now(datetime.timezone.utc)), self.stream, self.seq, last_seq,
                   time.monotonic() - self.started,
                   " ".join("%s=%d" % kv for kv in sorted(self.counts.items())), " done" if final else ""))
        try:
            with open(path, "a") as handle:
                handle.write(line)
        except OSError as exc:
            self.fail("cannot write progress_file %s: %s" % (path, exc))

    def run(self):
        problem = check_filters(self.p)
        if problem:
            self.fail(problem)
        filters = dict(subjects=self.p.get("subjects"), reason=self.p.get("reason"),
                       reason_header=self.p.get("reason_header"),
                       since=parse_bound(self.p.get("since"), "since", self.now),
                       until=parse_bound(self.p.get("up_to"), "up_to", self.now))
        info = self.js.stream_info(self.stream)
        if info is None:
            self.fail("DLQ stream %s does not exist (migration.dlq.stream); nothing to replay from" % self.stream)
        filters["dlq_subjects"] = (info.get("config") or {}).get("subjects") or []
        if (info.get("config") or {}).get("deny_delete") and not self.check:
            self.fail("DLQ stream %s denies message deletes (deny_delete): a replayed dead letter could not be "
                      "removed and would stay next to its republished copy; allow deletes on it first" % self.stream)
        state = info.get("state") or {}
        last_seq = self.last_seq = int(state.get("last_seq") or 0)
        self.seq = int(state.get("first_seq") or 1)
        limit = self.p.get("max_messages") or 0
        while self.seq <= last_seq and not (limit and self.counts["matched"] >= limit):
            message = self.get(self.seq)
            if message is None or int(message["seq"]) > last_seq:
                self.seq = last_seq  # walked to the end
                break
            self.seq = int(message["seq"])
            self.handle(message, filters)
            self.seq += 1
        self.seq = min(self.seq, last_seq)
        self.progress(last_seq, final=True)
        return self.out(last_seq=last_seq, since=_iso(filters["since"]), until=_iso(filters["until"]),
                        msg=self.summary())

    def summary(self):
        c = self.counts
        if self.check:
            return "check mode: %d of %d dead letters in %s would be replayed; nothing sent or deleted" % (
                c["matched"], c["scanned"], self.stream)
        return ("%d of %d dead letters in %s matched: %d republished, %d already republished before (duplicate "
                "ack), %d deleted from the DLQ; %d cannot be replayed (no original subject)"
                % (c["matched"], c["scanned"], self.stream, c["replayed"], c["duplicates"], c["deleted"],
                   c["unreplayable"]))

    def get(self, seq):
        try:
            reply = self.js.request("STREAM.MSG.GET.%s" % self.stream, {"seq": seq, "next_by_subj": ">"})
        except ApiError as exc:
            if exc.err_code == NO_MESSAGE_FOUND:
                return None
            self.fail("reading DLQ %s at seq %d: %s" % (self.stream, seq, exc))
        return reply.get("message") or None

    def handle(self, message, filters):
        self.counts["scanned"] += 1
        headers = parse_headers(message.get("hdrs"))
        letter = dict(seq=int(message["seq"]), headers=headers, time=parse_time(message.get("time")),
                      original_subject=header(headers, self.p["original_subject_header"]))
        ok, why = select(letter, filters)
        if not ok:
            if why not in ("subject", "time", "reason"):
                self.counts["unreplayable"] += 1
                self.unreplayable.append(letter["seq"])
            return
        self.counts["matched"] += 1
        msg_id = replay_id(letter, self.stream, self.p)
        entry = dict(dlq_seq=letter["seq"], subject=letter["original_subject"], msg_id=msg_id,
                     time=_iso(letter["time"]), reason=header(headers, self.p.get("reason_header")))
        if len(self.listed) < LISTED_MAX:
            self.listed.append(entry)
        if not self.check:
            data = base64.b64decode(message.get("data") or "")
            ack = self.republish(letter["original_subject"], data, replay_headers(letter, msg_id, self.p), letter)
            entry["ack"] = ack
            self.counts["duplicates" if ack["duplicate"] else "replayed"] += 1
            self.delete(letter["seq"])
            self.counts["deleted"] += 1
        self.progress(self.last_seq)

    def republish(self, subject, data, headers, letter):
        """The ack of a stream other than the DLQ; retried on no responders / timeout (the msg id dedupes)."""
        attempts = 1 + max(0, self.p.get("publish_retries") or 0)
        last = None
        for attempt in range(1, attempts + 1):
            try:
                msg = self.js.raw_request(subject, data, headers=headers)
            except JetStreamError as exc:
                if not isinstance(exc.__context__, RETRYABLE):
                    self.fail("republishing DLQ %s seq %d to %s: %s; the dead letter is kept"
                              % (self.stream, letter["seq"], subject, exc))
                last = exc
                if attempt < attempts:
                    self.sleep(backoff(attempt, self.p["retry_delay"], self.p["retry_max_delay"]))
                continue
            try:
                ack = parse_ack(subject, self.js.where, msg.data)
            except JetStreamError as exc:
                self.fail("republishing DLQ %s seq %d: %s; the dead letter is kept" % (self.stream, letter["seq"], exc))
            if ack["stream"] == self.stream:
                self.fail("republishing DLQ %s seq %d: %s was stored by the DLQ itself; check "
                          "migration.dlq.replay.original_subject_header" % (self.stream, letter["seq"], subject))
            return ack
        self.fail("republishing DLQ %s seq %d to %s failed after %d attempts (%s); no stream captures it? the dead "
                  "letter is kept" % (self.stream, letter["seq"], subject, attempts, last))

    def delete(self, seq):
        api = "STREAM.MSG.DELETE.%s" % self.stream

        def recheck(js):  # after a timeout: gone means the delete took effect
            try:
                js.request("STREAM.MSG.GET.%s" % self.stream, {"seq": seq})
            except ApiError as exc:
                if exc.err_code == NO_MESSAGE_FOUND:
                    return {"success": True}
                raise
            return None
        try:
            self.js.request(api, {"seq": seq, "no_erase": True}, recheck=recheck)
        except ApiError as exc:
            if exc.err_code == NO_MESSAGE_FOUND:
                return  # deleted meanwhile (another replay): the outcome wanted
            self.fail("deleting DLQ %s seq %d after its republish was acknowledged: %s; a re-run republishes it as "
                      "a duplicate and deletes it" % (self.stream, seq, exc))
        except JetStreamError as exc:
            self.fail("deleting DLQ %s seq %d after its republish was acknowledged: %s; a re-run republishes it as "
                      "a duplicate and deletes it" % (self.stream, seq, exc))


def dlq_replay(module, js):
    return Replay(module, js).run()
