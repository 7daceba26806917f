# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The retry policy of JetStream API requests: which failures may be sent again, how long to wait, and for how long.

Pure functions (tests/unit/test_client_retry.py); the loop that applies them is JetStreamClient.request
(jetstream_api.py).
"""

from __future__ import annotations

from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import (
    CLUSTER_INCOMPLETE, CLUSTER_NO_PEERS, CLUSTER_NOT_ASSIGNED, CLUSTER_NOT_AVAILABLE, CLUSTER_NOT_LEADER,
    TOO_MANY_REQUESTS)

# Error replies that mean "no leader yet / cluster temporarily unavailable": the server refused the request
# without applying it, so it may be sent again. Everything else the server answers is definitive.
TRANSIENT_ERR_CODES = frozenset([CLUSTER_INCOMPLETE, CLUSTER_NO_PEERS, CLUSTER_NOT_ASSIGNED, CLUSTER_NOT_AVAILABLE,
                                 CLUSTER_NOT_LEADER, TOO_MANY_REQUESTS])

# API names (after the prefix) that only read: retried freely. Anything else is a write.
READ_APIS = ("INFO", "STREAM.INFO", "STREAM.LIST", "STREAM.NAMES", "CONSUMER.INFO", "CONSUMER.LIST",
             "CONSUMER.NAMES", "STREAM.MSG.GET", "DIRECT.GET")

DEFAULT_RETRY_BUDGET = 30.0
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 2.0

# What a failed attempt says about the request (see classify()).
NOT_APPLIED = "not applied"  # transient, and the server certainly did not apply it: safe to send again
UNKNOWN = "outcome unknown"  # timed out / connection lost after sending: a write may have taken effect
DEFINITIVE = "definitive"  # the server's final answer: never retried


def is_read(api):
    """True when the JetStream API ``api`` (e.g. ``STREAM.INFO.ORDERS``) only reads."""
    return any(api == name or api.startswith(name + ".") for name in READ_APIS)


def classify(kind, err_code=None):
    """What a failure of ``kind`` (timeout, no_responders, connection_lost, disconnected, api_error) means."""
    if kind in ("timeout", "connection_lost"):
        return UNKNOWN
    if kind in ("no_responders", "disconnected"):
        return NOT_APPLIED
    if kind == "api_error" and err_code in TRANSIENT_ERR_CODES:
        return NOT_APPLIED
    return DEFINITIVE


def may_retry(read, outcome, has_recheck):
    """Whether a request may be attempted again after a failure with ``outcome``."""
    if outcome == DEFINITIVE:
        return False
    if outcome == NOT_APPLIED or read:
        return True
    return bool(has_recheck)  # a write whose outcome is unknown: only after re-reading the state


def backoff(retry, first=BACKOFF_FIRST, cap=BACKOFF_MAX):
    """Seconds to wait before retry number ``retry`` (1, 2, ...): first, doubling, at most cap."""
    return min(cap, first * (2 ** max(0, retry - 1)))


def retry_plan(budget, elapsed, retry):
    """The delay before retry number ``retry``, or None when it would not start inside ``budget`` seconds."""
    if not budget or budget <= 0:
        return None
    delay = backoff(retry)
    if elapsed + delay >= budget:
        return None
    return delay


def leader_hint(api):
    """Which leader a timed-out request of ``api`` was probably waiting for, for the retry warning."""
    if api.startswith(("STREAM.INFO.", "STREAM.MSG.", "DIRECT.", "STREAM.PURGE.")):
        return "no stream leader?"
    if api.startswith(("CONSUMER.INFO.", "CONSUMER.PAUSE.", "CONSUMER.LIST.", "CONSUMER.NAMES.")):
        return "no stream or consumer leader?"
    return "no meta leader?"


def summarize_warnings(lines, cap=10):
    """Identical lines once (with a count), at most ``cap`` lines, the rest summed up in a last line."""
    counts, order = {}, []
    for line in lines:
        if line not in counts:
            order.append(line)
        counts[line] = counts.get(line, 0) + 1
    out = ["%s (x%d)" % (line, counts[line]) if counts[line] > 1 else line for line in order]
    if len(out) > cap:
        rest = len(out) - (cap - 1)
        out = out[:cap - 1] + ["... and %d more retry warnings (%d in all)" % (rest, len(lines))]
    return out
