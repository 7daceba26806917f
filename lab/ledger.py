#!/usr/bin/env python3
"""Loss checker: compares a load-generator ledger with what the lab actually stored.

  lab/ledger.py check --ledger .lab/ledger-<run>.jsonl [--out report.json] [--settle-s 30]

Sinks: hrv_data and vendor_events (by event_id) and the DLQ stream (AA_DLQ, by the body's eventId).
Report (printed and written as JSON):
  lost          acked by ingest, found in no sink           (must be 0)
  unexpected    stored with this run's id prefix, never sent (must be 0)
  duplicates    ids stored in more than one sink, or acked by JetStream under more than one stream seq
  duplicate_deliveries  events normalize processed again after their row existed (the unique event_id hides
                these from the tables): normalize_duplicate_deliveries_total over the run, from the lab's
                Prometheus (all traffic of the lab in that time, not only this run's ids; null without Prometheus)
  unknown       ledger outcome unknown (and how many of them were stored anyway)
  publish_gap_ms  longest window without a successful publish during the run
--settle-s waits (re-checking) until nothing acked is missing, up to that many seconds: use it after
faults, while retries drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lab import labenv  # noqa: E402


def read_ledger(path):
    recs = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    return recs


def run_prefixes(recs):
    return sorted({"-".join(r["id"].split("-")[:2]) + "-" for r in recs if r["id"].startswith("lg-")})


def stored_ids(database_url, table, prefixes):
    import psycopg2
    out = {}
    conn = psycopg2.connect(database_url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            for prefix in prefixes:
                cur.execute("SELECT event_id, count(*) FROM %s WHERE event_id LIKE %%s GROUP BY event_id" % table,
                            (prefix + "%",))
                for eid, n in cur.fetchall():
                    out[eid] = out.get(eid, 0) + n
    finally:
        conn.close()
    return out


def dlq_ids(env, stream, prefixes):
    """eventIds of the messages in the DLQ stream (0 when the stream does not exist)."""
    import nats

    async def run():
        nc = await nats.connect(env["NATS_URL"].split(","), user=env.get("NATS_USER"),
                                password=env.get("NATS_PASSWORD"), connect_timeout=3, allow_reconnect=False,
                                max_reconnect_attempts=0)
        out = {}
        try:
            info = json.loads((await nc.request("$JS.API.STREAM.INFO." + stream, b"", timeout=5)).data)
            if "error" in info:
                return out
            first, last = info["state"]["first_seq"], info["state"]["last_seq"]
            for seq in range(first, last + 1) if info["state"]["messages"] else []:
                rep = json.loads((await nc.request("$JS.API.STREAM.MSG.GET." + stream,
                                                   json.dumps({"seq": seq}).encode(), timeout=5)).data)
                if "error" in rep:
                    continue
                import base64
                try:
                    body = json.loads(base64.b64decode(rep["message"].get("data") or ""))
                    eid = body.get("eventId")
                except (ValueError, AttributeError):
                    continue
                if eid and any(eid.startswith(p) for p in prefixes):
                    out[eid] = out.get(eid, 0) + 1
        finally:
            await nc.close()
        return out

    return asyncio.run(run())


def publish_gap_ms(recs):
    if not recs:
        return 0
    start = min(r["sent_at"] for r in recs)
    end = max(r.get("done_at", r["sent_at"]) for r in recs)
    acks = sorted(r["done_at"] for r in recs if r["outcome"] == "acked")
    points = [start] + acks + [end]
    return int(round(max(b - a for a, b in zip(points, points[1:])) * 1000)) if len(points) > 1 else 0


def duplicate_deliveries(env, recs):
    """Deliveries of an already stored event since the run began (Prometheus), or None when it cannot be asked."""
    import urllib.parse
    import urllib.request
    url = env.get("PROMETHEUS_URL")
    if not url or not recs:
        return None
    span = int(time.time() - min(r["sent_at"] for r in recs)) + 5
    query = "sum(increase(normalize_duplicate_deliveries_total[%ds]))" % span
    try:
        with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": query}), timeout=5) as r:
            result = json.loads(r.read())["data"]["result"]
    except (OSError, ValueError, KeyError):
        return None
    return int(round(float(result[0]["value"][1]))) if result else 0  # no series: nothing was delivered twice


def check_once(recs, env, dlq_stream):
    prefixes = run_prefixes(recs)
    hrv = stored_ids(env["DATABASE_URL"], "hrv_data", prefixes)
    vendor = stored_ids(env["DATABASE_URL"], "vendor_events", prefixes)
    dlq = dlq_ids(env, dlq_stream, prefixes)
    sent = {}
    for r in recs:
        sent.setdefault(r["id"], []).append(r)
    acked = {i for i, rs in sent.items() if any(r["outcome"] == "acked" for r in rs)}
    unknown = {i for i, rs in sent.items() if i not in acked and any(r["outcome"] == "unknown" for r in rs)}
    failed = {i for i, rs in sent.items() if i not in acked and i not in unknown}
    stored = set(hrv) | set(vendor) | set(dlq)
    lost = sorted(acked - stored)
    unexpected = sorted(stored - set(sent))
    dup = set()
    for i in stored:
        if (hrv.get(i, 0) + vendor.get(i, 0) + dlq.get(i, 0)) > 1:
            dup.add(i)
    for i, rs in sent.items():
        seqs = {(r.get("stream"), r.get("seq")) for r in rs if r["outcome"] == "acked"}
        if len(seqs) > 1:
            dup.add(i)
    stored_failed = sorted(failed & stored)  # "failed" yet stored: the ingest's outcome was wrong
    report = {
        "run_ids": prefixes, "sent": len(sent), "acked": len(acked), "failed": len(failed),
        "unknown": len(unknown), "unknown_stored": len(unknown & stored),
        "stored_hrv": len(hrv), "stored_vendor": len(vendor), "dlq": len(dlq),
        "lost": len(lost), "lost_ids": lost[:100],
        "unexpected": len(unexpected), "unexpected_ids": unexpected[:100],
        "duplicates": len(dup), "duplicate_ids": sorted(dup)[:100],
        "duplicate_deliveries": duplicate_deliveries(env, recs),
        "failed_but_stored": len(stored_failed), "failed_but_stored_ids": stored_failed[:100],
        "publish_gap_ms": publish_gap_ms(recs),
    }
    report["ok"] = report["lost"] == 0 and report["unexpected"] == 0 and report["duplicates"] == 0
    return report


def check(ledger, env=None, dlq_stream="AA_DLQ", settle_s=0, out=None):
    """The report as a dict (also written to ``out`` when given)."""
    env = env if isinstance(env, dict) else labenv.load(env)
    recs = read_ledger(ledger)
    deadline = time.time() + settle_s
    while True:
        report = check_once(recs, env, dlq_stream)
        if report["lost"] == 0 or time.time() >= deadline:
            break
        time.sleep(1)
    report["ledger"] = str(ledger)
    if out:
        with open(out, "w") as fh:
            json.dump(report, fh, indent=2)
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check")
    p.add_argument("--ledger", required=True)
    p.add_argument("--env", help="lab env file (default .lab/env)")
    p.add_argument("--dlq-stream", default="AA_DLQ")
    p.add_argument("--settle-s", type=float, default=0)
    p.add_argument("--out", help="write the JSON report here too (default <ledger>.report.json)")
    args = ap.parse_args(argv)
    report = check(args.ledger, args.env, args.dlq_stream, args.settle_s, args.out or args.ledger + ".report.json")
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
