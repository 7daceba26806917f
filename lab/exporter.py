#!/usr/bin/env python3
"""Lab JetStream exporter: stream and consumer state as Prometheus metrics, under the names and labels of the
exporter production runs - nats-surveyor or prometheus-nats-exporter (--convention, or AA_LAB_EXPORTER).

  lab/exporter.py --port 19091 --servers nats://127.0.0.1:14222,... [--migration migration.json]
                  [--convention nats-surveyor|prometheus-nats-exporter]
  (NATS_USER / NATS_PASSWORD from the environment)

The names come from plugins/module_utils/promql.py's CONVENTIONS, the table the rules are rendered from, so the lab
reads exactly what production's exporter offers and nothing more (docs/MONITORING.md):

  nats-surveyor                                  prometheus-nats-exporter
  nats_stream_total_messages{stream}             jetstream_stream_total_messages{stream_name}
  nats_stream_last_seq{stream}                   jetstream_stream_last_seq{stream_name}
  nats_consumer_num_pending{stream,consumer_name}      jetstream_consumer_num_pending{stream_name,consumer_name}
  nats_consumer_num_ack_pending, _num_redelivered      jetstream_consumer_num_ack_pending, _num_redelivered
  (no source lag)                                jetstream_stream_source_lag{stream_name,source_name}
  nats_up                                        (none)

and, as the journal exporter production may run next to them (migration_metrics.journal_exporter):
  aa_migration_journal_timestamp_seconds{stream,phase,event}   the journal (docs/JOURNAL.md), for annotations
  aa_migration_legacy_misrouted{stream,phase,group}   1 when the legacy stream stored a message of a group's
                                                subjects after that group's cut-over (seq > cutover_seq)

It polls every --interval seconds in the background and serves the last complete poll; a stream that does not
answer in one poll (leader election) keeps its previous values for up to --stale seconds, so a single missed read
is not a gap in the series.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily


def _module_util(name):
    """A module_utils file loaded by path (the exporter runs outside Ansible's collection loader)."""
    path = Path(__file__).resolve().parents[1] / "plugins" / "module_utils" / ("%s.py" % name)
    spec = importlib.util.spec_from_file_location("aa_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The journal's format lives in one module (docs/JOURNAL.md), the one the modules write it with.
JOURNAL = _module_util("journal")


def conventions():
    """promql.CONVENTIONS, loaded from its file."""
    return _module_util("promql").CONVENTIONS


class Snapshot(object):
    def __init__(self):
        self.up = 0.0
        self.streams = {}     # name -> {"at": monotonic time of the read, "info": stream info, "consumers": [...]}
        self.misrouted = {}   # (phase, group) -> 0/1


def journal(metadata):
    """(phase, event, seconds) for every timestamp entry of the journal in a stream's metadata."""
    return [(str(phase), event, float(seconds)) for phase, event, seconds in JOURNAL.times(metadata)]


def cut_over_phases(legacy_meta, new_meta_by_phase):
    """{phase: cutover_seq} of the groups cut over and not rolled back since (journal rules, docs/JOURNAL.md)."""
    out = {}
    for phase, meta in new_meta_by_phase.items():
        legacy, new = JOURNAL.fields(legacy_meta, phase), JOURNAL.fields(meta, phase)
        at = JOURNAL.journal_time(legacy, "cutover_at") or JOURNAL.journal_time(new, "cutover_at")
        seq = JOURNAL.number(new.get("cutover_seq"))
        back = JOURNAL.journal_time(legacy, "rolled_back_at")
        if at and seq and not (back and back >= at):
            out[phase] = seq
    return out


class Poller(object):
    def __init__(self, args, migration):
        self.args = args
        self.migration = migration or {}
        self.snap = Snapshot()
        self.lock = threading.Lock()
        self.nc = None

    async def api(self, subject, body=None):
        msg = await self.nc.request("$JS.API." + subject, json.dumps(body).encode() if body is not None else b"",
                                    timeout=self.args.timeout)
        reply = json.loads(msg.data)
        if "error" in reply:
            raise RuntimeError(reply["error"].get("description", reply["error"]))
        return reply

    async def list_all(self, subject, key):
        out, offset = [], 0
        while True:
            page = await self.api(subject, {"offset": offset})
            items = page.get(key) or []
            out.extend(items)
            offset += len(items)
            if not items or offset >= page.get("total", 0):
                return out

    async def misrouted(self, streams):
        """{(phase, group): 0/1}: a message of the group's subjects on the legacy stream after its cut-over seq."""
        legacy = (self.migration.get("legacy") or {}).get("stream")
        if not legacy or legacy not in streams:
            return {}
        legacy_meta = streams[legacy]["config"].get("metadata") or {}
        groups = {str(g["phase"]): g for g in self.migration.get("groups") or []}
        new_meta = {p: (streams[g["stream"]]["config"].get("metadata") or {})
                    for p, g in groups.items() if g["stream"] in streams}
        out = {}
        for phase, cut_seq in cut_over_phases(legacy_meta, new_meta).items():
            found = 0
            for subject in groups[phase]["subjects"]:
                try:
                    await self.api("STREAM.MSG.GET." + legacy, {"seq": cut_seq + 1, "next_by_subj": subject})
                    found = 1
                    break
                except RuntimeError:  # "no message found": nothing stored after the cut-over
                    continue
            out[(phase, groups[phase]["name"])] = found
        return out

    async def poll(self):
        names = [s["config"]["name"] for s in await self.list_all("STREAM.LIST", "streams")]
        now = time.monotonic()
        fresh = {}
        for name in names:
            try:
                info = await self.api("STREAM.INFO." + name)
                consumers = await self.list_all("CONSUMER.LIST." + name, "consumers")
            except Exception:  # noqa: BLE001 - no leader this instant: keep the last values a little while
                continue
            fresh[name] = {"at": now, "info": info, "consumers": consumers}
        info_by_name = {n: v["info"] for n, v in fresh.items()}
        try:
            misrouted = await self.misrouted(info_by_name)
        except Exception:  # noqa: BLE001
            misrouted = None
        with self.lock:
            kept = {n: v for n, v in self.snap.streams.items()
                    if n in names and n not in fresh and now - v["at"] < self.args.stale}
            kept.update(fresh)
            self.snap.streams = kept
            self.snap.up = 1.0
            if misrouted is not None:
                self.snap.misrouted = misrouted

    async def run(self):
        import nats
        while True:
            try:
                if self.nc is None or not self.nc.is_connected:
                    self.nc = await nats.connect(self.args.servers.split(","), user=os.environ.get("NATS_USER"),
                                                 password=os.environ.get("NATS_PASSWORD"), connect_timeout=2,
                                                 name="lab-exporter", max_reconnect_attempts=-1)
                await self.poll()
            except Exception as exc:  # noqa: BLE001 - NATS down: report it, try again next interval
                with self.lock:
                    self.snap.up = 0.0
                print("poll failed: %s" % exc, flush=True)
            await asyncio.sleep(self.args.interval)


class Collector(object):
    def __init__(self, poller, names):
        self.poller = poller
        self.n = names  # one entry of promql.CONVENTIONS

    def collect(self):
        with self.poller.lock:
            snap = self.poller.snap
            streams = dict(snap.streams)
            up = snap.up
            misrouted = dict(snap.misrouted)
        n = self.n
        if n["stream"] == "stream":  # nats-surveyor's own liveness gauge; prometheus-nats-exporter has none
            yield GaugeMetricFamily("nats_up", "1 if the last poll reached NATS", value=up)
        s_msgs = GaugeMetricFamily(n["messages"], "Messages stored in a stream", labels=[n["stream"]])
        s_last = GaugeMetricFamily(n["last_seq"], "Last sequence of a stream", labels=[n["stream"]])
        s_src = GaugeMetricFamily(n["source_lag"], "Messages a stream's source is behind",
                                  labels=[n["stream"], n["source"]]) if n["source_lag"] else None
        labels = [n["stream"], n["consumer"]]
        c_pend = GaugeMetricFamily(n["pending"], "Messages not yet delivered to a consumer", labels=labels)
        c_ack = GaugeMetricFamily(n["ack_pending"], "Delivered, not yet acknowledged", labels=labels)
        c_red = GaugeMetricFamily(n["redelivered"], "Redelivered messages", labels=labels)
        j_ts = GaugeMetricFamily("aa_migration_journal_timestamp_seconds", "Migration journal entries (Unix s)",
                                 labels=["stream", "phase", "event"])
        for name, v in sorted(streams.items()):
            info = v["info"]
            state = info.get("state") or {}
            s_msgs.add_metric([name], state.get("messages", 0))
            s_last.add_metric([name], state.get("last_seq", 0))
            for src in info.get("sources") or [] if s_src else []:
                s_src.add_metric([name, src.get("name", "")], src.get("lag", 0))
            for phase, event, ts in journal((info.get("config") or {}).get("metadata")):
                j_ts.add_metric([name, phase, event], ts)
            for c in v["consumers"]:
                key = [name, c["name"]]
                c_pend.add_metric(key, c.get("num_pending", 0))
                c_ack.add_metric(key, c.get("num_ack_pending", 0))
                c_red.add_metric(key, c.get("num_redelivered", 0))
        mis = GaugeMetricFamily("aa_migration_legacy_misrouted",
                                "1: the legacy stream stored a migrated group's subject after its cut-over",
                                labels=["stream", "phase", "group"])
        legacy = (self.poller.migration.get("legacy") or {}).get("stream", "")
        for (phase, group), value in sorted(misrouted.items()):
            mis.add_metric([legacy, phase, group], value)
        yield from (f for f in (s_msgs, s_last, s_src, c_pend, c_ack, c_red, j_ts, mis) if f is not None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--servers", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    ap.add_argument("--migration", help="JSON file with the inventory's `migration` (legacy stream, groups)")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--stale", type=float, default=15.0)
    table = conventions()
    ap.add_argument("--convention", choices=sorted(table),
                    default=os.environ.get("AA_LAB_EXPORTER") or "nats-surveyor",
                    help="whose metric names to emit (migration_metrics.exporter)")
    args = ap.parse_args(argv)
    migration = json.load(open(args.migration)) if args.migration and os.path.exists(args.migration) else {}
    poller = Poller(args, migration)
    REGISTRY.register(Collector(poller, table[args.convention]))
    start_http_server(args.port, addr=args.host)
    print("lab exporter (%s names) on http://%s:%d/metrics" % (args.convention, args.host, args.port), flush=True)
    asyncio.run(poller.run())


if __name__ == "__main__":
    sys.exit(main())
