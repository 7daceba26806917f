# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""One JetStream publish with a parsed ack and retries (nats-py's js.publish does not retry).

No responders (no stream captures the subject yet, or its leader is being elected) and timeouts
are retried with exponential backoff; an error inside the ack (wrong expected stream, ...) is not.
"""

from __future__ import annotations

import asyncio
import json
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError

try:
    from nats import errors as nats_errors
    RETRYABLE = (nats_errors.NoRespondersError, nats_errors.TimeoutError, asyncio.TimeoutError)
except ImportError:  # pragma: no cover - the runner reports the missing library
    RETRYABLE = (asyncio.TimeoutError,)

MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_STREAM_HEADER = "Nats-Expected-Stream"


def build_message(params):
    """(payload bytes, headers dict or None) from the task options."""
    if params.get("payload_json") is not None:
        data = json.dumps(params["payload_json"], separators=(",", ":")).encode("utf-8")
    else:
        data = (params.get("payload") or "").encode("utf-8")
    headers = dict((str(k), str(v)) for k, v in (params.get("headers") or {}).items())
    if params.get("msg_id"):
        headers[MSG_ID_HEADER] = params["msg_id"]
    if params.get("expected_stream"):
        headers[EXPECTED_STREAM_HEADER] = params["expected_stream"]
    return data, headers or None


def backoff(attempt, delay, max_delay):
    """Seconds to sleep after failed attempt number ``attempt`` (1-based): delay, 2*delay, 4*delay, ... capped."""
    return min(max_delay, delay * (2 ** (attempt - 1)))


def parse_ack(subject, where, data):
    """The pub ack as {stream, seq, duplicate, domain}; an error ack or non-ack reply is one JetStreamError."""
    try:
        ack = json.loads(data or b"")
    except ValueError:
        ack = None
    if not isinstance(ack, dict):
        raise JetStreamError("publish to %s at %s got a reply that is not a JetStream ack (%r); is a core "
                             "NATS service, not a stream, listening on the subject?" % (subject, where, data[:80]))
    if ack.get("error"):
        err = ack["error"]
        raise JetStreamError("JetStream rejected the publish to %s at %s: %s (code %s, err_code %s)"
                             % (subject, where, err.get("description", ""), err.get("code"), err.get("err_code")))
    if "stream" not in ack or "seq" not in ack:
        raise JetStreamError("publish to %s at %s got a reply without stream/seq (%r)" % (subject, where, data[:80]))
    return dict(stream=ack["stream"], seq=ack["seq"], duplicate=bool(ack.get("duplicate", False)),
                domain=ack.get("domain"))


def publish(module, js, sleep=time.sleep):
    params = module.params
    subject = params["subject"]
    data, headers = build_message(params)
    if params["retries"] < 0:
        raise JetStreamError("retries must be 0 or more, got %d" % params["retries"])
    base = dict(subject=subject, msg_id=params.get("msg_id"), size=len(data))
    if module.check_mode:
        return dict(base, changed=True, attempts=0, ack=None,
                    msg="check mode: skipped publishing %d bytes to %s" % (len(data), subject))
    attempts = 1 + params["retries"]
    last = None
    for attempt in range(1, attempts + 1):
        try:
            msg = js.raw_request(subject, data, headers=headers)
        except JetStreamError as exc:
            # raw_request raised while handling the nats-py error: that error is the context.
            if not isinstance(exc.__context__, RETRYABLE):
                raise JetStreamError(str(exc), attempts=attempt, **base)
            last = exc
            if attempt < attempts:
                sleep(backoff(attempt, params["retry_delay"], params["retry_max_delay"]))
            continue
        try:
            ack = parse_ack(subject, js.where, msg.data)
        except JetStreamError as exc:
            raise JetStreamError(str(exc), attempts=attempt, **base)
        return dict(base, changed=not ack["duplicate"], ack=ack, attempts=attempt)
    raise JetStreamError("publish to %s failed after %d attempts: %s" % (subject, attempts, last),
                         attempts=attempts, **base)
