# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Waiting until a consumer has processed what it must (runbook step 2.7, "drain before removing subjects").

Drained: num_pending 0, num_ack_pending 0, num_redelivered 0 and ack_floor.consumer_seq == delivered.consumer_seq,
seen on ``stable_polls`` consecutive polls. With ``until_stream_seq`` N (a cut-over point on a stream that still
receives messages): ack_floor.stream_seq >= N, or num_ack_pending 0 and (delivered.stream_seq >= N or
num_pending 0) -- a filtered consumer's ack floor may never reach N when later messages do not match its filter.
Every message up to N is already stored, so once that holds it stays true: one reading is enough, and
``stable_polls`` applies only to the full drain, whose empty backlog can be momentary.

Progress (for the stall check) is the ack floor moving or the outstanding work (num_pending + num_ack_pending)
shrinking; redeliveries alone are not progress.
"""

from __future__ import annotations

import datetime
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations
from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import fmt_seconds
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError


def counts(info):
    """The numbers a drain watches, from a consumer info reply."""
    delivered = info.get("delivered") or {}
    floor = info.get("ack_floor") or {}
    return dict(
        num_pending=info.get("num_pending", 0),
        num_ack_pending=info.get("num_ack_pending", 0),
        num_redelivered=info.get("num_redelivered", 0),
        delivered=dict(consumer_seq=delivered.get("consumer_seq", 0), stream_seq=delivered.get("stream_seq", 0)),
        ack_floor=dict(consumer_seq=floor.get("consumer_seq", 0), stream_seq=floor.get("stream_seq", 0)),
    )


def is_drained(c, until_stream_seq=None):
    if until_stream_seq is not None:
        return (c["ack_floor"]["stream_seq"] >= until_stream_seq or
                (c["num_ack_pending"] == 0 and
                 (c["delivered"]["stream_seq"] >= until_stream_seq or c["num_pending"] == 0)))
    return (c["num_pending"] == 0 and c["num_ack_pending"] == 0 and c["num_redelivered"] == 0 and
            c["ack_floor"]["consumer_seq"] == c["delivered"]["consumer_seq"])


def outstanding(c):
    return c["num_pending"] + c["num_ack_pending"]


def _now_text():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Drain(object):
    """``module`` needs ``params`` (the consumer_drain options) and ``check_mode``; ``option_names`` renames
    ``timeout`` / ``stall_timeout`` in failure messages for a module whose options are named otherwise."""

    def __init__(self, module, js, option_names=None):
        p = module.params
        self.module = module
        self.js = js
        self.names = dict(dict(timeout="timeout", stall_timeout="stall_timeout"), **(option_names or {}))
        self.stream = p["stream"]
        self.consumer = p["consumer"]
        self.until = p.get("until_stream_seq")
        self.timeout = durations.wait_seconds(p["timeout"], self.names["timeout"])
        self.poll_interval = durations.wait_seconds(p["poll_interval"], "poll_interval")
        self.stall_timeout = durations.wait_seconds(p["stall_timeout"], self.names["stall_timeout"])
        self.stable_polls = p["stable_polls"]
        self.progress_file = p.get("progress_file")
        if self.stable_polls < 1:
            raise JetStreamError("stable_polls must be 1 or more, got %d" % self.stable_polls)
        if self.until is not None and self.until < 1:
            raise JetStreamError("until_stream_seq must be a stream sequence (1 or more), got %d" % self.until)
        self.label = "consumer %s on stream %s" % (self.consumer, self.stream)
        self.start = None
        self.initial = None
        self.last_info = None
        self.polls = 0
        self.errors = 0
        self.last_error = None

    # -- polling ----------------------------------------------------------------------------
    def _missing(self):
        if self.js.stream_info(self.stream) is None:
            return "stream %s not found at %s" % (self.stream, self.js.where)
        return "consumer %s not found on stream %s at %s" % (self.consumer, self.stream, self.js.where)

    def poll(self, first=False):
        """Consumer info; transient failures after the first poll are counted and ridden out."""
        try:
            info = self.js.consumer_info(self.stream, self.consumer)
        except JetStreamError as exc:
            if first:
                raise
            self.errors += 1
            self.last_error = str(exc)
            return None
        self.polls += 1
        if info is None:
            if first:
                raise JetStreamError(self._missing())
            raise JetStreamError("%s was deleted during the drain (%s)" % (self.label, self._missing()),
                                 **self.result(False))
        self.last_info = info
        return info

    def acked(self, c):
        """Acknowledged deliveries since the start (the ack floor's consumer sequence moved by this many)."""
        return max(0, c["ack_floor"]["consumer_seq"] - self.initial["ack_floor"]["consumer_seq"])

    def elapsed(self):
        return time.monotonic() - self.start if self.start is not None else 0.0

    def rate(self, c):
        elapsed = self.elapsed()
        return round(self.acked(c) / elapsed, 3) if elapsed > 0 else 0.0

    def log(self, c, satisfied):
        if not self.progress_file:
            return
        rate = self.rate(c)
        remaining = outstanding(c)
        eta = ("%.0fs" % (remaining / rate)) if rate > 0 and remaining else "-"
        line = ("%s stream=%s consumer=%s poll=%d elapsed=%.1fs pending=%d ack_pending=%d redelivered=%d "
                "ack_floor=%d/%d delivered=%d/%d acked=%d rate=%.2f/s eta=%s drained=%s\n"
                % (_now_text(), self.stream, self.consumer, self.polls, self.elapsed(), c["num_pending"],
                   c["num_ack_pending"], c["num_redelivered"], c["ack_floor"]["consumer_seq"],
                   c["ack_floor"]["stream_seq"], c["delivered"]["consumer_seq"], c["delivered"]["stream_seq"],
                   self.acked(c), rate, eta, "yes" if satisfied else "no"))
        try:
            with open(self.progress_file, "a") as handle:
                handle.write(line)
        except OSError as exc:
            raise JetStreamError("cannot write progress_file %s: %s" % (self.progress_file, exc),
                                 **self.result(False))

    def result(self, drained):
        final = counts(self.last_info) if self.last_info else None
        return dict(
            changed=False, drained=drained, stream=self.stream, consumer=self.consumer,
            until_stream_seq=self.until, initial=self.initial, final=final,
            elapsed=round(self.elapsed(), 3), acked=self.acked(final) if final and self.initial else 0,
            rate=self.rate(final) if final and self.initial else 0.0, polls=self.polls,
            poll_errors=self.errors, last_poll_error=self.last_error, info=self.last_info or {},
        )

    # -- the wait ---------------------------------------------------------------------------
    def run(self):
        self.start = time.monotonic()
        info = self.poll(first=True)
        c = counts(info)
        self.initial = c
        satisfied = is_drained(c, self.until)
        self.log(c, satisfied)
        if self.module.check_mode:
            return self.result(satisfied)
        streak = 1 if satisfied else 0
        deadline = self.start + self.timeout
        last_progress = self.start
        best_floor, best_outstanding = c["ack_floor"]["consumer_seq"], outstanding(c)
        needed = 1 if self.until is not None else self.stable_polls  # see the module docstring
        while streak < needed:
            now = time.monotonic()
            if now >= deadline:
                self._fail_timeout(c)
            if now - last_progress >= self.stall_timeout and outstanding(c) > 0:
                self._fail_stall(c, now - last_progress)
            time.sleep(max(0.0, min(self.poll_interval, deadline - now)))
            info = self.poll()
            if info is None:  # transient API failure; the deadline and the stall clock keep running
                continue
            c = counts(info)
            if c["ack_floor"]["consumer_seq"] > best_floor or outstanding(c) < best_outstanding:
                last_progress = time.monotonic()
            best_floor = max(best_floor, c["ack_floor"]["consumer_seq"])
            best_outstanding = min(best_outstanding, outstanding(c))
            satisfied = is_drained(c, self.until)
            streak = streak + 1 if satisfied else 0
            self.log(c, satisfied)
        return self.result(True)

    def _state_text(self, c):
        return ("pending=%d ack_pending=%d redelivered=%d ack_floor.stream_seq=%d"
                % (c["num_pending"], c["num_ack_pending"], c["num_redelivered"], c["ack_floor"]["stream_seq"]))

    def _fail_timeout(self, c):
        goal = "reach stream sequence %d" % self.until if self.until is not None else "drain"
        raise JetStreamError("%s did not %s within %s=%ss (%s, %d acked at %.2f msgs/s); raise `%s` "
                             "or add workers" % (self.label, goal, self.names["timeout"], fmt_seconds(self.timeout),
                                                 self._state_text(c), self.acked(c), self.rate(c),
                                                 self.names["timeout"]),
                             **self.result(False))

    def _fail_stall(self, c, idle):
        raise JetStreamError("%s stalled: its ack floor has not moved for %ss while work is pending (%s); check "
                             "that its workers run and ack, or raise `%s` (now %ss)"
                             % (self.label, fmt_seconds(idle), self._state_text(c), self.names["stall_timeout"],
                                fmt_seconds(self.stall_timeout)),
                             **self.result(False))


def run(module, js):
    """``action`` for runner.run_module."""
    return Drain(module, js).run()
