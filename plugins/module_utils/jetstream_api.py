# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""A small synchronous JetStream client speaking raw JSON on $JS.API.*, with the retry policy of retry.py.

nats-py's StreamConfig/ConsumerConfig classes silently drop fields they do not know, and the
server replaces the whole config on update, so round-tripping through them would reset fields.
Here every request and reply is a plain dict.
"""

from __future__ import annotations

import json
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, retry
from ansible_collections.athlete_ally.nats.plugins.module_utils.connection import Connection
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import (
    CONSUMER_NOT_FOUND, STREAM_NOT_FOUND, ApiError, JetStreamError, RetryBudgetExhausted, TransportError)


def config_holds(want, live):
    """True when every field of ``want`` has the same value in ``live`` (dicts compared field by field)."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and config_holds(v, live[k]) for k, v in want.items())
    return want == live


def recheck_stream_config(name, config):
    """``recheck`` for STREAM.CREATE/UPDATE: the stream's info when its live config already holds ``config``."""
    def recheck(js):
        info = js.stream_info(name)
        return info if info and config_holds(config, info.get("config") or {}) else None
    return recheck


def recheck_stream_deleted(name):
    """``recheck`` for STREAM.DELETE: the server's success reply when the stream is gone."""
    def recheck(js):
        return {"success": True} if js.stream_info(name) is None else None
    return recheck


def recheck_consumer_config(stream, name, config):
    """``recheck`` for CONSUMER.CREATE: the consumer's info when its live config already holds ``config``."""
    def recheck(js):
        info = js.consumer_info(stream, name)
        return info if info and config_holds(config, info.get("config") or {}) else None
    return recheck


def recheck_consumer_deleted(stream, name):
    """``recheck`` for CONSUMER.DELETE: the server's success reply when the consumer is gone."""
    def recheck(js):
        return {"success": True} if js.consumer_info(stream, name) is None else None
    return recheck


class JetStreamClient(Connection):
    """Use as a context manager: ``with JetStreamClient(module.params) as js: js.request(...)``."""

    # The retry loop's clock and pause; a test script replaces them on its instance to run without waiting.
    clock = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    def __init__(self, params):
        super().__init__(params)
        self.retry_budget = max(0.0, durations.option_seconds(params.get("retry_budget"), "retry_budget",
                                                              retry.DEFAULT_RETRY_BUDGET))
        self.warnings = []  # one line per retry; runner.run_module hands them to module.warn()
        self._budget_start = None  # clock() at the start of the outermost request's retry budget
        self._js_answered = False  # some JetStream API reply was received in this run

    def _request_once(self, api, payload, timeout):
        if self.nc is None or self.nc.is_closed:
            self.reconnect()
        subject = "%s.%s" % (self.prefix, api)
        body = b"" if payload is None else json.dumps(payload).encode()
        msg = self.raw_request(subject, body, timeout=timeout)
        self._js_answered = True
        try:
            reply = json.loads(msg.data or b"{}")
        except ValueError:
            raise JetStreamError("JetStream API %s at %s answered with non-JSON data" % (api, self.where))
        if isinstance(reply, dict) and reply.get("error"):
            raise ApiError(api, reply["error"])
        return reply

    def request(self, api, payload=None, timeout=None, recheck=None):
        """JetStream API call: ``api`` is the part after the prefix, e.g. ``STREAM.INFO.ORDERS``.

        Transient failures (timeout, no responders, lost connection, "no leader"/"temporarily unavailable"
        replies) are retried with exponential backoff for up to ``retry_budget`` seconds, which requests made
        meanwhile (``recheck``) share. Reads (see retry.READ_APIS) are always retried. A write whose outcome is
        unknown (timed out, connection lost after sending) is sent again only when ``recheck(js)`` is given:
        it re-reads the state and returns the reply to use when the write did take effect, else None (then
        the write is resent). Without ``recheck`` a write is retried only when the failure proves it was not
        applied. Definitive server errors are never retried. Each retry adds a line to ``self.warnings``.
        """
        own = self._budget_start is None
        if own:
            self._budget_start = self.clock()
        try:
            return self._request_retrying(api, payload, timeout, recheck)
        finally:
            if own:
                self._budget_start = None

    def _jetstream_expected(self):
        """Whether "no responders" can be passing: JetStream answered before, or the server announces it."""
        if self._js_answered:
            return True
        info = getattr(self.nc, "_server_info", None) or {}
        return bool(info.get("jetstream")) and self.prefix == "$JS.API"

    def _request_retrying(self, api, payload, timeout, recheck):
        read = retry.is_read(api)
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._request_once(api, payload, timeout)
            except (ApiError, TransportError) as exc:
                outcome = retry.classify(exc.kind, getattr(exc, "err_code", None))
                if exc.kind == "no_responders" and not self._jetstream_expected():
                    outcome = retry.DEFINITIVE  # JetStream is off here or domain/api_prefix is wrong: not passing
                if self.retry_budget <= 0 or outcome == retry.DEFINITIVE:
                    raise
                if not retry.may_retry(read, outcome, recheck is not None):
                    raise JetStreamError("%s; not resent because the write's outcome is unknown: re-read the state "
                                         "before running the task again" % exc, **exc.result)
                elapsed = self.clock() - self._budget_start
                delay = retry.retry_plan(self.retry_budget, elapsed, attempts)
                if delay is None:
                    raise self._exhausted(api, exc, attempts, elapsed)
                what = "%s: %s" % (api, exc.short)
                if exc.kind == "timeout":
                    what += " (%s)" % retry.leader_hint(api)
                if recheck is not None and outcome == retry.UNKNOWN:
                    what += "; outcome unknown, re-read the state before retrying"
                self.warnings.append("%s; retrying in %ss (%.1fs of the %ss retry budget used)"
                                     % (what, durations.fmt_seconds(delay), elapsed,
                                        durations.fmt_seconds(self.retry_budget)))
                self.sleep(delay)
            if recheck is not None:
                reply = recheck(self)
                if reply is not None:
                    self.warnings.append("%s: the re-read shows the write took effect; not sent again" % api)
                    return reply

    def _exhausted(self, api, exc, attempts, elapsed):
        result = dict(exc.result, retry_attempts=attempts)
        return RetryBudgetExhausted(
            "JetStream API %s at %s still failing after %d attempt%s in %.1fs (retry_budget %ss); last error: %s; "
            "raise retry_budget or check that the cluster has quorum and the stream has a leader"
            % (api, self.where, attempts, "" if attempts == 1 else "s", elapsed,
               durations.fmt_seconds(self.retry_budget), exc.short), **result)

    # -- common lookups ---------------------------------------------------------------------
    def account_info(self):
        return self.request("INFO")

    def stream_info(self, name):
        """Stream info dict, or None when the stream does not exist."""
        try:
            return self.request("STREAM.INFO.%s" % name)
        except ApiError as exc:
            if exc.err_code == STREAM_NOT_FOUND:
                return None
            raise

    def consumer_info(self, stream, name):
        """Consumer info dict, or None when the stream or the consumer does not exist."""
        try:
            return self.request("CONSUMER.INFO.%s.%s" % (stream, name))
        except ApiError as exc:
            if exc.err_code in (STREAM_NOT_FOUND, CONSUMER_NOT_FOUND):
                return None
            raise

    def _paged(self, api, key, payload=None):
        items, offset = [], 0
        while True:
            body = dict(payload or {}, offset=offset)
            reply = self.request(api, body)
            page = reply.get(key) or []
            items.extend(page)
            offset += len(page)
            if not page or offset >= reply.get("total", 0):
                return items

    def streams(self, subject=None):
        """Info of every stream (optionally only those listening on ``subject``)."""
        return self._paged("STREAM.LIST", "streams", {"subject": subject} if subject else None)

    def stream_names(self, subject=None):
        """Names of every stream (optionally only those with a subject that overlaps ``subject``)."""
        return self._paged("STREAM.NAMES", "streams", {"subject": subject} if subject else None)

    def consumers(self, stream):
        return self._paged("CONSUMER.LIST.%s" % stream, "consumers")
