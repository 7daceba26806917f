#!/usr/bin/env python3
"""Steady load through the ingest API with a loss ledger.

Sends HRV (POST /api/v1/ingest/hrv) and vendor (POST /api/v1/webhook/oura) events at a fixed rate, each
with a unique eventId "lg-<run>-<kind>-<n>", and appends one JSON line per event to the ledger:
  {"id", "kind", "sent_at", "done_at", "outcome": acked|failed|unknown, "http_status", "stream", "seq", ...}
acked   = ingest answered 200 (JetStream stored it)
failed  = definitely not stored (400, connection refused, ingest says outcome=failed)
unknown = may or may not be stored (timeouts, 5xx without a definite outcome)

Runs for --duration seconds, or until --stop-file appears (whichever first); SIGTERM also stops it.
Prints a JSON summary at the end. Example:
  lab/loadgen.py --rate 20 --duration 30 --ledger .lab/ledger.jsonl &
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lab import labenv  # noqa: E402


class Ledger(object):
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.fh = open(path, "a")
        self.counts = {"acked": 0, "failed": 0, "unknown": 0}

    def write(self, rec):
        with self.lock:
            self.fh.write(json.dumps(rec) + "\n")
            self.fh.flush()
            self.counts[rec["outcome"]] = self.counts.get(rec["outcome"], 0) + 1

    def close(self):
        self.fh.close()


_local = threading.local()


def post(url, body, timeout):
    """POST JSON on a per-thread keep-alive connection. Returns (status, json) or raises."""
    u = urlparse(url)
    key = (u.hostname, u.port)
    if not hasattr(_local, "conns"):
        _local.conns = {}
    conn = _local.conns.get(key)
    if conn is None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        _local.conns[key] = conn
    data = json.dumps(body).encode()
    try:
        conn.request("POST", u.path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
    except Exception:
        conn.close()
        _local.conns.pop(key, None)
        raise
    try:
        return resp.status, json.loads(raw or b"{}")
    except ValueError:
        return resp.status, {"raw": raw[:200].decode("latin-1")}


def send_one(args, ledger, kind, n):
    eid = "lg-%s-%s-%d" % (args.run_id, kind, n)
    if kind == "hrv":
        url = args.ingest_url.rstrip("/") + "/api/v1/ingest/hrv"
        body = {"eventId": eid, "userId": "lg-user-%d" % (n % 50), "date": "2025-10-%02d" % (1 + n % 28),
                "rmssd": round(random.uniform(20, 120), 2)}
    else:
        url = args.ingest_url.rstrip("/") + "/api/v1/webhook/oura"
        body = {"eventId": eid, "userId": "lg-user-%d" % (n % 50), "event_type": "daily_activity",
                "data": {"n": n}}
    rec = {"id": eid, "kind": kind, "sent_at": time.time()}
    try:
        status, reply = post(url, body, args.timeout)
        rec["http_status"] = status
        if status == 200:
            rec.update(outcome="acked", stream=reply.get("stream"), seq=reply.get("seq"),
                       duplicate=reply.get("duplicate", False), attempts=reply.get("attempts"))
        elif status == 400:
            rec.update(outcome="failed", error=reply.get("error"))
        elif status == 503 and reply.get("outcome") in ("failed", "unknown"):
            rec.update(outcome=reply["outcome"], error=reply.get("error"))
        else:
            rec.update(outcome="unknown", error=str(reply)[:200])
    except ConnectionRefusedError as exc:
        rec.update(outcome="failed", error="connection refused: %s" % exc)
    except (socket.timeout, TimeoutError) as exc:
        rec.update(outcome="unknown", error="timeout: %s" % exc)
    except Exception as exc:  # noqa: BLE001 - the request may have reached ingest
        rec.update(outcome="unknown", error="%s: %s" % (exc.__class__.__name__, exc))
    rec["done_at"] = time.time()
    ledger.write(rec)


def run(args):
    ledger = Ledger(args.ledger)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    interval = 1.0 / args.rate
    start = time.monotonic()
    sent = {"hrv": 0, "vendor": 0}
    rng = random.Random(args.run_id)
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        next_at = start
        while not stop.is_set():
            now = time.monotonic()
            if args.duration and now - start >= args.duration:
                break
            if args.stop_file and os.path.exists(args.stop_file):
                break
            if now < next_at:
                stop.wait(min(next_at - now, 0.05))
                continue
            kind = "vendor" if rng.random() < args.vendor_ratio else "hrv"
            sent[kind] += 1
            pool.submit(send_one, args, ledger, kind, sent[kind])
            next_at += interval
    ledger.close()
    summary = dict(run_id=args.run_id, ledger=args.ledger, seconds=round(time.monotonic() - start, 2),
                   sent=sum(sent.values()), by_kind=sent, **ledger.counts)
    print(json.dumps(summary))
    return summary


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", help="lab env file (default .lab/env or $AA_LAB_DIR/env)")
    ap.add_argument("--ingest-url", help="default INGEST_URL from the lab env file")
    ap.add_argument("--rate", type=float, default=20.0, help="events per second (default 20)")
    ap.add_argument("--vendor-ratio", type=float, default=0.25, help="share of vendor events (default 0.25)")
    ap.add_argument("--duration", type=float, default=0, help="seconds; 0 = until the stop file / SIGTERM")
    ap.add_argument("--stop-file", help="stop when this file exists")
    ap.add_argument("--ledger", default=None, help="JSONL ledger (default <lab_dir>/ledger-<run>.jsonl)")
    ap.add_argument("--run-id", default=None, help="id prefix of this run (default random)")
    ap.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout per request (ingest retries <= 20 s)")
    ap.add_argument("--workers", type=int, default=64)
    args = ap.parse_args(argv)
    args.run_id = args.run_id or uuid.uuid4().hex[:8]
    if not args.ingest_url or not args.ledger:
        env = labenv.load(args.env)
        args.ingest_url = args.ingest_url or env["INGEST_URL"]
        args.ledger = args.ledger or os.path.join(env["LAB_DIR"], "ledger-%s.jsonl" % args.run_id)
    return args


if __name__ == "__main__":
    run(parse())
