"""ingest-service (lab twin): HTTP in, JetStream publish out, with Nats-Msg-Id dedupe and bounded retries.

GET  /health                 -> {status, eventBus}
POST /api/v1/ingest/hrv      {userId, date, rmssd[, eventId]} -> athlete-ally.hrv.raw-received
POST /api/v1/webhook/oura    {userId[, event_type, data, eventId]} -> vendor.oura.webhook.received

LAB_REPLY_OMIT (lab-only test hook, e.g. "seq"): comma-separated fields left out of the 200 answer, to break the
service contract (docs/SERVICE_CONTRACT.md) on purpose (tests/lab/test_contract.py).

Publish retries (no responders, timeouts, JetStream API errors) back off exponentially and stop
after PUBLISH_RETRY_BUDGET_S (default 20 s), well inside the streams' 2-minute duplicate window, so
a retried publish is always deduplicated by its Nats-Msg-Id.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import os
import sys
import time
import uuid

from nats import errors as nats_errors
from nats.js import errors as js_errors

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lab.services.common import connect_nats, run_service, setup  # noqa: E402

HRV_SUBJECT = "athlete-ally.hrv.raw-received"
OURA_SUBJECT = "vendor.oura.webhook.received"


class BadRequest(Exception):
    pass


def _event_id(body):
    eid = body.get("eventId")
    if eid is None:
        return "evt-%s" % uuid.uuid4()
    if not isinstance(eid, str) or not eid.strip() or len(eid) > 200:
        raise BadRequest("eventId must be a non-empty string of at most 200 characters")
    return eid


def _user_id(body):
    uid = body.get("userId")
    if not isinstance(uid, str) or not uid.strip():
        raise BadRequest("userId is required and must be a non-empty string")
    return uid


def validate_hrv(body):
    uid = _user_id(body)
    date = body.get("date")
    if not isinstance(date, str):
        raise BadRequest("date is required as YYYY-MM-DD")
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise BadRequest("date %r is not a valid YYYY-MM-DD date" % date)
    rmssd = body.get("rmssd")
    if isinstance(rmssd, bool) or not isinstance(rmssd, (int, float)) or not math.isfinite(rmssd):
        raise BadRequest("rmssd is required and must be a number")
    if rmssd <= 0 or rmssd > 1000:
        raise BadRequest("rmssd must be > 0 and <= 1000 (milliseconds), got %s" % rmssd)
    event = {"eventId": _event_id(body), "userId": uid, "date": date, "rmssd": float(rmssd),
             "capturedAt": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    if body.get("poison") is True:
        event["poison"] = True
    return event


def validate_oura(body):
    uid = _user_id(body)
    etype = body.get("event_type", "unknown")
    if not isinstance(etype, str):
        raise BadRequest("event_type must be a string")
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise BadRequest("data must be an object")
    event = {"eventId": _event_id(body), "vendor": "oura", "userId": uid, "event_type": etype, "data": data,
             "receivedAt": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    if body.get("poison") is True:
        event["poison"] = True
    return event


class Ingest(object):
    def __init__(self, log, name):
        self.log = log
        self.name = name
        self.nc = None
        self.js = None
        self.budget = float(os.environ.get("PUBLISH_RETRY_BUDGET_S", "20"))
        self.attempt_timeout = float(os.environ.get("PUBLISH_TIMEOUT_S", "2"))
        self.reply_omit = {f.strip() for f in os.environ.get("LAB_REPLY_OMIT", "").split(",") if f.strip()}

    async def start(self):
        self.nc = await connect_nats(self.log, self.name)
        self.js = self.nc.jetstream(timeout=self.attempt_timeout)
        self.log.info("connected to NATS %s", self.nc.connected_url.netloc if self.nc.connected_url else "?")

    async def stop(self):
        if self.nc is not None:
            await self.nc.close()

    async def publish(self, subject, event):
        """Returns (ack, attempts) or raises PublishFailed with outcome failed|unknown."""
        payload = json.dumps(event).encode()
        headers = {"Nats-Msg-Id": event["eventId"]}
        deadline = time.monotonic() + self.budget
        delay, attempts, maybe_stored, last = 0.1, 0, False, None
        while True:
            attempts += 1
            try:
                ack = await self.js.publish(subject, payload, timeout=self.attempt_timeout, headers=headers)
                return ack, attempts
            except (nats_errors.NoRespondersError, js_errors.NoStreamResponseError):
                last = "no responders (no stream leader for %s)" % subject
            except (nats_errors.TimeoutError, asyncio.TimeoutError):
                maybe_stored, last = True, "publish timed out"
            except js_errors.APIError as exc:  # the stream answered with an error: not stored
                last = "JetStream error: %s" % exc
            except (nats_errors.ConnectionReconnectingError, nats_errors.OutboundBufferLimitError) as exc:
                last = "NATS connection: %s" % exc.__class__.__name__  # refused before sending
            except (nats_errors.ConnectionClosedError, nats_errors.StaleConnectionError) as exc:
                maybe_stored, last = True, "NATS connection: %s" % exc.__class__.__name__
            except nats_errors.Error as exc:  # anything else from the client: it may have reached the stream
                maybe_stored, last = True, "%s: %s" % (exc.__class__.__name__, exc)
            except Exception as exc:  # noqa: BLE001 - client internals mid-reconnect: may have been sent, retry
                maybe_stored, last = True, "%s: %s" % (exc.__class__.__name__, exc)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishFailed(last, "unknown" if maybe_stored else "failed", attempts)
            self.log.warning("publish %s %s attempt %d failed: %s; retrying in %.1fs",
                             subject, event["eventId"], attempts, last, min(delay, remaining))
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)

    async def handle(self, raw, validate, subject):
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": "body must be a JSON object"}
        if not isinstance(body, dict):
            return 400, {"error": "body must be a JSON object"}
        try:
            event = validate(body)
        except BadRequest as exc:
            return 400, {"error": str(exc)}
        if self.js is None:
            return 503, {"error": "event bus not connected yet", "eventId": event["eventId"], "outcome": "failed"}
        try:
            ack, attempts = await self.publish(subject, event)
        except PublishFailed as exc:
            self.log.error("publish %s %s gave up after %d attempts: %s (outcome %s)",
                           subject, event["eventId"], exc.attempts, exc, exc.outcome)
            return 503, {"error": "event bus unavailable: %s" % exc, "eventId": event["eventId"],
                         "outcome": exc.outcome, "attempts": exc.attempts}
        reply = {"status": "accepted", "eventId": event["eventId"], "subject": subject,
                 "stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate), "attempts": attempts}
        return 200, {k: v for k, v in reply.items() if k not in self.reply_omit}

    async def hrv(self, body):
        return await self.handle(body, validate_hrv, HRV_SUBJECT)

    async def oura(self, body):
        return await self.handle(body, validate_oura, OURA_SUBJECT)

    async def health(self, _body):
        connected = self.nc is not None and self.nc.is_connected
        return (200 if connected else 503), {"status": "healthy" if connected else "degraded",
                                             "eventBus": "connected" if connected else "disconnected",
                                             "service": self.name}

    def routes(self):
        return {("GET", "/health"): self.health, ("POST", "/api/v1/ingest/hrv"): self.hrv,
                ("POST", "/api/v1/webhook/oura"): self.oura}


class PublishFailed(Exception):
    def __init__(self, msg, outcome, attempts):
        super().__init__(msg)
        self.outcome = outcome
        self.attempts = attempts


def main():
    args, log = setup("ingest-service")
    svc = Ingest(log, args.name)
    host = os.environ.get("BIND_HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "4101"))
    run_service(svc.start, svc.stop, svc.routes, host, port, log)


if __name__ == "__main__":
    main()
