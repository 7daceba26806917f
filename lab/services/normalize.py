"""normalize-service (lab twin): pull consumers -> PostgreSQL, with stream binding as the runbook describes.

EVENT_STREAM_MODE=single  each durable binds to the first of AA_STREAM_CANDIDATES.
EVENT_STREAM_MODE=multi   each durable binds to the first candidate stream that exists and holds that
                          durable; candidates that do not are logged "Failed to bind to <STREAM>".
A bound consumer that disappears (deleted during a migration) triggers a new bind round.

HRV rows go to hrv_data (ln_rmssd = ln(rmssd)), vendor events to vendor_events; both idempotent on
event_id. Ack after commit; failures NAK with a delay; on the last delivery (max_deliver from the
consumer info) the message is published to dlq.<subject> with failure headers and terminated.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time

import psycopg2
from nats import errors as nats_errors
from nats.js import errors as js_errors
from prometheus_client import Counter, start_http_server

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lab.services.common import connect_nats, run_service, setup  # noqa: E402

HRV_DURABLE = "normalize-hrv-durable"
OURA_DURABLE = "normalize-oura"

HRV_TOTAL = Counter("normalize_hrv_messages_total", "HRV messages handled by normalize", ["result", "stream"])
MSG_TOTAL = Counter("normalize_messages_total", "Messages handled by normalize", ["result", "subject", "stream"])
# Committed writes, the metric behind the runbook's "DB disconnect" alert (inserts = 0) and writes/min: a row the
# database did not have, or a delivery of an event it already had (the unique event_id hides the second
# processing; the ledger reports these as duplicate deliveries).
DB_INSERTS = Counter("normalize_db_inserts_total", "Rows committed by normalize (new event_id)", ["table", "stream"])
DUPLICATE_DELIVERIES = Counter("normalize_duplicate_deliveries_total",
                               "Deliveries of an event already stored (insert skipped on event_id)",
                               ["table", "stream"])


def init_metrics(stream, is_hrv):
    """Series at 0 from the bind on: rate() and increase() then count the first event too (a series created by its
    first increment has no earlier sample to count from)."""
    table = "hrv_data" if is_hrv else "vendor_events"
    DB_INSERTS.labels(table, stream)
    DUPLICATE_DELIVERIES.labels(table, stream)
    if is_hrv:
        for result in ("success", "retry", "dlq"):
            HRV_TOTAL.labels(result, stream)


class ProcessingError(Exception):
    pass


class DatabaseError(ProcessingError):
    pass


class Db(object):
    """One psycopg2 connection per worker, used from a thread; reconnects after any failure."""

    def __init__(self, url):
        self.url = url
        self.conn = None

    def _conn(self):
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(self.url, connect_timeout=3)
        return self.conn

    def execute(self, sql, params):
        """Run and commit one statement; returns its rowcount (1 = inserted, 0 = event_id already there)."""
        try:
            conn = self._conn()
            with conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.rowcount
            conn.commit()
            return rows
        except psycopg2.Error as exc:
            try:
                if self.conn is not None:
                    self.conn.close()
            except psycopg2.Error:
                pass
            self.conn = None
            raise DatabaseError("database: %s" % (str(exc).strip().splitlines() or [exc.__class__.__name__])[0])


def store_hrv(db, event):
    rmssd = float(event["rmssd"])
    if rmssd <= 0:
        raise ProcessingError("rmssd must be > 0")
    rows = db.execute("INSERT INTO hrv_data (event_id, user_id, date, rmssd, ln_rmssd, captured_at) "
                      "VALUES (%s, %s, %s, %s, %s, COALESCE(%s::timestamptz, now())) ON CONFLICT (event_id) DO NOTHING",
                      (event["eventId"], event["userId"], event["date"], rmssd, math.log(rmssd),
                       event.get("capturedAt")))
    return "hrv_data", rows


def store_vendor(db, event):
    rows = db.execute("INSERT INTO vendor_events (event_id, vendor, user_id, event_type, payload) "
                      "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                      (event["eventId"], event.get("vendor", "oura"), event.get("userId"), event.get("event_type"),
                       json.dumps(event.get("data") or {})))
    return "vendor_events", rows


# JetStream answers that mean "this stream / consumer does not exist" (any other failure may be transient).
STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014


def _absent(exc):
    return isinstance(exc, js_errors.NotFoundError) and exc.err_code in (STREAM_NOT_FOUND, CONSUMER_NOT_FOUND)


class Unavailable(Exception):
    """A candidate stream that may hold the durable did not answer (leader election, no quorum, reconnect)."""

    def __init__(self, stream, why):
        super().__init__("%s: %s" % (stream, why))
        self.stream = stream
        self.why = why


class Worker(object):
    """One durable: bind, fetch, process; survives any exception (re-binds with backoff) and detects a stall.

    A leader election or a dead server must not move the binding: after such a loss the worker re-binds to the
    stream it was on, waiting for it as long as it takes, and a bind round never skips a candidate that did not
    answer (only one that answered "not found") - otherwise the drained legacy consumer, whose leader may come
    back first, would win and the new stream's consumer would be left with nobody pulling."""

    def __init__(self, svc, durable, store, is_hrv):
        self.svc = svc
        self.log = svc.log
        self.durable = durable
        self.store = store
        self.is_hrv = is_hrv
        self.db = Db(svc.database_url)
        self.stream = None
        self.sub = None
        self.max_deliver = 5
        self.sticky = None  # the stream to re-bind to after a transient loss
        self.backoff = self.svc.bind_backoff_min
        self.last_progress = 0.0

    async def _bind_to(self, stream):
        """Bind to ``stream``; True when bound, False when it answered "not found"; raises Unavailable."""
        js = self.svc.js
        try:
            info = await js.consumer_info(stream, self.durable, timeout=self.svc.api_timeout)
        except Exception as exc:  # noqa: BLE001 - classified below
            if _absent(exc):
                self.log.warning("%s Failed to bind to %s: %s", self.durable, stream, _why(exc))
                return False
            raise Unavailable(stream, _why(exc))
        try:
            self.sub = await js.pull_subscribe_bind(durable=self.durable, stream=stream)
        except Exception as exc:  # noqa: BLE001 - connection trouble between the two calls
            raise Unavailable(stream, _why(exc))
        self.stream = stream
        init_metrics(stream, self.is_hrv)
        self.max_deliver = info.config.max_deliver if info.config.max_deliver and info.config.max_deliver > 0 else 0
        self.last_progress = time.monotonic()
        self.log.info("%s bound to %s (mode=%s, max_deliver=%s)", self.durable, stream, self.svc.mode,
                      self.max_deliver)
        return True

    async def bind(self):
        """One bind round; True when bound. Raises Unavailable when a candidate that may hold the durable did not
        answer (the round is repeated later, with backoff, instead of falling through to a lower candidate)."""
        if self.sticky:
            if await self._bind_to(self.sticky):
                return True
            self.log.warning("%s: %s no longer holds it; choosing again among %s", self.durable, self.sticky,
                             ",".join(self.svc.candidates))
            self.sticky = None
        candidates = self.svc.candidates
        if self.svc.mode == "single":
            candidates = candidates[:1]
        for stream in candidates:
            if await self._bind_to(stream):
                return True
        self.stream = None
        return False

    async def run(self):
        while not self.svc.stopping:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - nothing may end this loop but stop()
                self.log.exception("%s unexpected %s on %s; binding again in %.1fs", self.durable, _why(exc),
                                   self.stream, self.backoff)
                await self._lost()

    async def step(self):
        if self.sub is None:
            try:
                bound = await self.bind()
            except Unavailable as exc:
                self.log.warning("%s cannot bind yet: %s did not answer (%s); not falling back, retrying in %.1fs",
                                 self.durable, exc.stream, exc.why, self.backoff)
                await self._sleep_backoff()
                return
            if not bound:  # no candidate holds the durable (yet): look again every second
                await asyncio.sleep(1)
                return
            self.backoff = self.svc.bind_backoff_min
        try:
            msgs = await asyncio.wait_for(self.sub.fetch(batch=50, timeout=1), self.svc.fetch_guard)
        except (nats_errors.TimeoutError, asyncio.TimeoutError):
            await self._check_stall()
            return
        except (nats_errors.ConnectionClosedError, nats_errors.ConnectionReconnectingError,
                nats_errors.StaleConnectionError):
            await asyncio.sleep(0.5)
            return
        except Exception as exc:  # noqa: BLE001 - no responders (no consumer leader / deleted), API errors
            self.log.warning("%s lost its consumer on %s (%s); binding again", self.durable, self.stream, _why(exc))
            await self._lost()
            return
        if msgs:
            self.last_progress = time.monotonic()
        for msg in msgs:
            if self.svc.stopping:
                await _quietly(msg.nak())  # hand it straight back: another instance (or our successor) takes it
                continue
            await self.handle(msg)

    async def _check_stall(self):
        """Nothing fetched for a while: if the consumer has messages for us, the subscription is dead - re-bind."""
        if time.monotonic() - self.last_progress < self.svc.stall_s:
            return
        self.last_progress = time.monotonic()
        try:
            info = await self.svc.js.consumer_info(self.stream, self.durable, timeout=self.svc.api_timeout)
        except Exception as exc:  # noqa: BLE001 - the next fetch tells what is wrong
            self.log.warning("%s idle on %s and its consumer does not answer (%s)", self.durable, self.stream,
                             _why(exc))
            return
        limit = info.config.max_ack_pending or 0
        if info.num_pending > 0 and (limit <= 0 or info.num_ack_pending < limit):
            self.log.warning("%s stalled on %s: %d pending but nothing fetched for %.0fs; re-subscribing",
                             self.durable, self.stream, info.num_pending, self.svc.stall_s)
            await self._lost()

    async def _lost(self):
        if self.stream:  # transient until proven otherwise: come back to the same stream
            self.sticky = self.stream
        await self._unbind()
        await self._sleep_backoff()

    async def _sleep_backoff(self):
        await asyncio.sleep(self.backoff)
        self.backoff = min(self.backoff * 2, self.svc.bind_backoff_max)

    async def _unbind(self):
        sub, self.sub, self.stream = self.sub, None, None
        if sub is not None:
            await _quietly(sub.unsubscribe())

    async def handle(self, msg):
        stream = self.stream
        subject = msg.subject
        try:
            delivered = msg.metadata.num_delivered
        except Exception:  # noqa: BLE001
            delivered = 1
        try:
            try:
                event = json.loads(msg.data)
            except ValueError:
                raise ProcessingError("body is not JSON")
            if not isinstance(event, dict) or "eventId" not in event:
                raise ProcessingError("body has no eventId")
            if event.get("poison") is True:
                raise ProcessingError("poison message (test hook)")
            written = await asyncio.to_thread(self.store, self.db, event)  # (table, rowcount) for the metrics
        except Exception as exc:  # noqa: BLE001 - every failure is retried, then dead-lettered
            await self.fail(msg, stream, subject, delivered, exc)
            return
        try:
            await msg.ack()
        except Exception as exc:  # noqa: BLE001 - stored already; redelivered after ack_wait, idempotent
            self.log.warning("%s ack of %s seq %s failed (%s); it will be redelivered", self.durable, subject,
                             _seq(msg), _why(exc))
            return
        if self.is_hrv:
            HRV_TOTAL.labels("success", stream).inc()
        MSG_TOTAL.labels("processed", subject, stream).inc()
        if written:
            table, rows = written
            (DB_INSERTS if rows else DUPLICATE_DELIVERIES).labels(table, stream).inc()

    async def fail(self, msg, stream, subject, delivered, exc):
        reason = str(exc) or exc.__class__.__name__
        last = self.max_deliver and delivered >= self.max_deliver
        if last:
            headers = dict(msg.headers or {})
            headers.update({
                "Nats-Msg-Id": "dlq:%s:%s" % (stream, msg.metadata.sequence.stream),
                "X-Failure-Reason": reason[:500], "X-Original-Subject": subject, "X-Original-Stream": stream,
                "X-Consumer": self.durable, "X-Deliveries": str(delivered),
            })
            try:
                ack = await self.svc.js.publish("dlq." + subject, msg.data, headers=headers, timeout=5)
            except Exception as dexc:  # noqa: BLE001 - no DLQ stream yet: leave the message un-acked
                self.log.error("%s DLQ publish for %s failed (%s); message stays un-acked on %s",
                               self.durable, subject, _why(dexc), stream)
                await _quietly(msg.nak(delay=5))
                return
            await _quietly(msg.term())
            self.log.error("%s dead-lettered %s seq %s after %d deliveries: %s -> %s seq %s", self.durable,
                           subject, msg.metadata.sequence.stream, delivered, reason, ack.stream, ack.seq)
            if self.is_hrv:
                HRV_TOTAL.labels("dlq", stream).inc()
            MSG_TOTAL.labels("dlq", subject, stream).inc()
            return
        if isinstance(exc, DatabaseError):
            delay = min(self.svc.db_retry_base * (2 ** (delivered - 1)), self.svc.db_retry_max)
        else:
            delay = self.svc.error_retry
        self.log.warning("%s delivery %d/%s of %s failed: %s; NAK, redelivery in %.1fs", self.durable, delivered,
                         self.max_deliver or "inf", subject, reason, delay)
        await _quietly(msg.nak(delay=delay))
        if self.is_hrv:
            HRV_TOTAL.labels("retry", stream).inc()
        MSG_TOTAL.labels("retry", subject, stream).inc()


async def _quietly(coro):
    """An ack-type call whose failure only means a redelivery after ack_wait."""
    try:
        await coro
    except Exception:  # noqa: BLE001
        pass


def _seq(msg):
    try:
        return msg.metadata.sequence.stream
    except Exception:  # noqa: BLE001
        return "?"


def _why(exc):
    text = str(exc).strip()
    return "%s%s" % (exc.__class__.__name__, ": " + text if text else "")


class Normalize(object):
    def __init__(self, log, name):
        self.log = log
        self.name = name
        self.mode = os.environ.get("EVENT_STREAM_MODE", "multi").strip().lower()
        if self.mode not in ("single", "multi"):
            log.warning("EVENT_STREAM_MODE=%r is neither single nor multi; using multi", self.mode)
            self.mode = "multi"
        self.candidates = [s.strip() for s in os.environ.get(
            "AA_STREAM_CANDIDATES", "AA_CORE_HOT,ATHLETE_ALLY_EVENTS").split(",") if s.strip()]
        self.database_url = os.environ["DATABASE_URL"]
        self.db_retry_base = float(os.environ.get("DB_RETRY_BASE_S", "2"))
        self.db_retry_max = float(os.environ.get("DB_RETRY_MAX_S", "16"))
        self.error_retry = float(os.environ.get("ERROR_RETRY_S", "0.2"))
        self.api_timeout = float(os.environ.get("JS_API_TIMEOUT_S", "5"))
        self.bind_backoff_min = float(os.environ.get("BIND_BACKOFF_MIN_S", "0.5"))
        self.bind_backoff_max = float(os.environ.get("BIND_BACKOFF_MAX_S", "5"))
        self.stall_s = float(os.environ.get("STALL_CHECK_S", "10"))
        self.fetch_guard = 10.0  # a fetch(timeout=1) that has not returned by then is stuck: abandon it
        self.stopping = False
        self.nc = self.js = None
        self.workers = []
        self.tasks = []

    async def start(self):
        self.log.info("mode=%s candidates=%s", self.mode, ",".join(self.candidates))
        self.nc = await connect_nats(self.log, self.name)
        self.js = self.nc.jetstream(timeout=5)
        self.workers = [Worker(self, HRV_DURABLE, store_hrv, True), Worker(self, OURA_DURABLE, store_vendor, False)]
        self.tasks = [self._spawn(w) for w in self.workers]

    def _spawn(self, worker):
        """Run a worker; should its task ever end (it should not), log why and start it again."""
        task = asyncio.ensure_future(worker.run())

        def done(t):
            if self.stopping or t.cancelled():
                return
            self.log.error("%s worker ended (%s); starting it again", worker.durable,
                           _why(t.exception()) if t.exception() else "returned")
            worker.sub = worker.stream = None
            self.tasks[self.workers.index(worker)] = self._spawn(worker)

        task.add_done_callback(done)
        return task

    async def stop(self):
        # Finish the message in hand, NAK the rest of the batch, then leave (no un-acked message waits ack_wait).
        self.stopping = True
        done, pending = await asyncio.wait(self.tasks, timeout=5) if self.tasks else (set(), set())
        for t in pending:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.nc is not None:
            await self.nc.close()

    async def health(self, _body):
        connected = self.nc is not None and self.nc.is_connected
        bound = {w.durable: w.stream for w in self.workers}
        alive = all(not t.done() for t in self.tasks)
        ok = connected and alive and all(bound.values()) and bool(bound)
        return (200 if ok else 503), {"status": "healthy" if ok else "degraded",
                                      "eventBus": "connected" if connected else "disconnected",
                                      "mode": self.mode, "candidates": self.candidates, "bindings": bound,
                                      "service": self.name}

    def routes(self):
        return {("GET", "/health"): self.health}


def main():
    args, log = setup("normalize-service")
    if os.environ.get("LAB_CRASH_ON_START"):  # lab fault: a bad release that crash-loops (tests/lab/test_rollback_deferred.py)
        log.error("LAB_CRASH_ON_START is set: exiting as a crash-looping release would")
        sys.exit(3)
    svc = Normalize(log, args.name)
    host = os.environ.get("BIND_HOST", "127.0.0.1")
    start_http_server(int(os.environ.get("METRICS_PORT", "9464")), addr=host)
    port = int(os.environ.get("PORT", "4102"))
    log.info("metrics on http://%s:%s/metrics", host, os.environ.get("METRICS_PORT", "9464"))
    run_service(svc.start, svc.stop, svc.routes, host, port, log)


if __name__ == "__main__":
    main()
