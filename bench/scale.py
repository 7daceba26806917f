"""What the collection's operations cost as the number of streams in the cluster grows.

Starts a 3-node JetStream cluster on free loopback ports, creates the streams a migration touches
(``SCALE_LEGACY`` with ``core.>`` + ``vendor.>``, ``SCALE_TARGET`` with ``target.>``, ``SCALE_NOOP`` with
``noop.>``; ``--replicas``, default 3) and then, for each size in ``--sizes``, fills the account with
unrelated streams up to that many (``filler.<i>.>``, R1 with file storage: they only have to exist for the
API calls that list or filter streams, and R1 keeps 500 of them light on 2 cores) and times:

* ``noop task``: a no-op ``athlete_ally.nats.jetstream_stream`` task (``SCALE_NOOP`` already in the desired
  state) through ``ansible-playbook`` (real module runs: AnsiballZ, fork/exec, imports, connect, the work);
  task times from the ansible.posix.json callback, first task a warm-up;
* ``noop in-process``: the same task's logic through module_utils (connect, ``stream.run``, close);
* ``overlap check``: ``stream.find_overlaps`` for ``vendor.>`` (STREAM.NAMES per subject, INFO per hit);
* ``overlap, LIST all``: what it replaced (STREAM.LIST of every stream config, compared locally), for reference;
* ``cut-over``: ``subject_move.plan`` + ``subject_move.move`` of ``vendor.>`` from ``SCALE_LEGACY`` to
  ``SCALE_TARGET`` and, as a separate sample, back (each sample is one direction; connect included).

Prints median and p90 per size and the growth of the median against the smallest size. No assertions.

    .venv/bin/python bench/scale.py [--sizes 10,100,500] [--iterations 15] [--tasks 8] [--replicas 3]
                                    [--no-playbook]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / ".collections"))

import nats  # noqa: E402

from ansible_collections.athlete_ally.nats.plugins.module_utils import stream, subject_move  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import JetStreamClient  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.modules.jetstream_stream import argument_spec  # noqa: E402
from bench import counts  # noqa: E402
from lab.ansible_run import run_playbook_file  # noqa: E402
from lab.nats_cluster import NatsCluster  # noqa: E402

LEGACY, TARGET, NOOP = "SCALE_LEGACY", "SCALE_TARGET", "SCALE_NOOP"
GROUP = ["vendor.>"]
NOOP_TASK = {"name": NOOP, "subjects": ["noop.>"], "storage": "file", "max_age": "1h"}

ROWS = [
    ("noop task", "jetstream_stream no-op, ansible-playbook task"),
    ("noop in-process", "jetstream_stream no-op, module_utils (connect+run+close)"),
    ("overlap check", "stream.find_overlaps(vendor.>): STREAM.NAMES + INFO per hit"),
    ("overlap, LIST all", "the previous way: STREAM.LIST of every config (reference)"),
    ("cut-over", "subject_move.plan + move of vendor.>, one direction"),
]


class StubModule(object):
    """What stream.run needs from AnsibleModule: params with the argspec defaults, check/diff flags, warn."""

    def __init__(self, params):
        self.params = params
        self.check_mode = False
        self._diff = False
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def task_params(url, replicas):
    params = {key: spec.get("default") for key, spec in argument_spec().items()}
    params.update(NOOP_TASK, replicas=replicas, servers=[url], connect_timeout=5.0, request_timeout=5.0)
    return params


async def _api(nc, subject, body=None):
    msg = await nc.request("$JS.API." + subject, json.dumps(body).encode() if body is not None else b"", timeout=30)
    reply = json.loads(msg.data)
    if reply.get("error"):
        raise RuntimeError("%s: %s" % (subject, reply["error"]))
    return reply


def create_streams(url, configs, parallel=16):
    """Create ``configs`` through nats-py directly (setup, not timed), ``parallel`` requests at a time."""
    async def go():
        nc = await nats.connect(url)
        try:
            for i in range(0, len(configs), parallel):
                batch = configs[i:i + parallel]
                await asyncio.gather(*(_api(nc, "STREAM.CREATE." + c["name"], c) for c in batch))
        finally:
            await nc.close()
    asyncio.run(go())


def timed(func, iterations):
    out = []
    for _i in range(iterations):
        started = time.perf_counter()
        func()
        out.append(time.perf_counter() - started)
    return out


def noop_in_process(params):
    with JetStreamClient(params) as js:
        result = stream.run(StubModule(params), js)
    if result["changed"]:
        raise RuntimeError("the no-op task changed %s: %s" % (NOOP, result["changed_fields"]))


def overlap_check(params):
    with JetStreamClient(params) as js:
        clashes = stream.find_overlaps(js, TARGET, GROUP)
    if list(clashes) != [LEGACY]:
        raise RuntimeError("find_overlaps found %s, expected %s" % (sorted(clashes), LEGACY))


def overlap_list_all(params):
    with JetStreamClient(params) as js:
        clashes = {}
        for info in js.streams():
            cfg = info.get("config") or {}
            pairs = stream.overlapping(GROUP, cfg.get("subjects")) if cfg.get("name") != TARGET else []
            if pairs:
                clashes[cfg["name"]] = pairs
    if list(clashes) != [LEGACY]:
        raise RuntimeError("LIST found %s, expected %s" % (sorted(clashes), LEGACY))


def cutover(params, direction):
    src, dst = (LEGACY, TARGET) if direction else (TARGET, LEGACY)
    with JetStreamClient(params) as js:
        todo = subject_move.plan(js, GROUP, src, dst, drop_sources=False)
        if todo["remove"] != GROUP or todo["add"] != GROUP:
            raise RuntimeError("unexpected plan %s -> %s: %s" % (src, dst, todo))
        subject_move.move(js, GROUP, src, dst)


def noop_tasks(url, replicas, tasks, workdir):
    """Durations of ``tasks`` no-op jetstream_stream tasks in one playbook (plus one warm-up, not counted)."""
    args = dict(NOOP_TASK, replicas=replicas, servers=[url])
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": [{"name": "noop #%d" % i, "athlete_ally.nats.jetstream_stream": args}
                       for i in range(tasks + 1)]}]
    path = Path(workdir) / "scale-noop.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    # every size's playbook appends its tasks and module runs here (main prints the sum)
    env = counts.callback_env(Path(workdir) / "counts.jsonl", {"ANSIBLE_FORKS": "1"})
    res = run_playbook_file(path, ["-i", "localhost,"], env=env, timeout=900)
    if res.rc != 0 or res.data is None:
        print(res.stdout[-3000:], res.stderr[-3000:])
        raise RuntimeError("no-op playbook failed (rc %s)" % res.rc)
    out = []
    for play_out in res.data["plays"]:
        for task in play_out["tasks"]:
            host = next(iter(task["hosts"].values()))
            if host.get("changed") or host.get("failed"):
                raise RuntimeError("no-op task was not a no-op: %s" % host.get("msg", host.get("changed_fields")))
            if task["task"]["name"] == "noop #0":
                continue
            dur = task["task"]["duration"]
            start, end = (datetime.datetime.fromisoformat(dur[k].replace("Z", "+00:00")) for k in ("start", "end"))
            out.append((end - start).total_seconds())
    return out


def p90(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def count_streams(params):
    with JetStreamClient(params) as js:
        return len(js.stream_names())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="10,100,500", help="stream counts, ascending (default 10,100,500)")
    parser.add_argument("--iterations", type=int, default=15, help="in-process samples per row and size (15)")
    parser.add_argument("--tasks", type=int, default=8, help="timed ansible-playbook no-op tasks per size (8)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas of the migration streams (3)")
    parser.add_argument("--no-playbook", action="store_true", help="skip the ansible-playbook row")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    own = [LEGACY, TARGET, NOOP]
    if sizes[0] < len(own):
        parser.error("the smallest size must be at least %d (the migration streams count)" % len(own))

    results = {}  # (row, size) -> [seconds]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aa-nats-scale-") as tmp:
        cluster = NatsCluster(Path(tmp) / "nats", size=3, name="scale").start()
        try:
            url = cluster.urls[0]
            params = task_params(url, args.replicas)
            create_streams(url, [
                {"name": LEGACY, "subjects": ["core.>"] + GROUP, "num_replicas": args.replicas},
                {"name": TARGET, "subjects": ["target.>"], "num_replicas": args.replicas},
                {"name": NOOP, "subjects": ["noop.>"], "storage": "file", "max_age": 3600 * 10 ** 9,
                 "num_replicas": args.replicas},
            ], parallel=1)
            made = len(own)
            for size in sizes:
                t0 = time.monotonic()
                create_streams(url, [{"name": "FILLER_%04d" % i, "subjects": ["filler.%d.>" % i], "num_replicas": 1}
                                     for i in range(made, size)])
                made = max(made, size)
                actual = count_streams(params)
                print("%d streams in the account (filler created in %.1fs)" % (actual, time.monotonic() - t0),
                      flush=True)
                if not args.no_playbook:
                    results[("noop task", size)] = noop_tasks(url, args.replicas, args.tasks, tmp)
                results[("noop in-process", size)] = timed(lambda: noop_in_process(params), args.iterations)
                results[("overlap check", size)] = timed(lambda: overlap_check(params), args.iterations)
                results[("overlap, LIST all", size)] = timed(lambda: overlap_list_all(params), args.iterations)
                # Even samples move the group to SCALE_TARGET, odd ones back; an odd count ends with one more back.
                results[("cut-over", size)] = [timed(lambda forth=(i % 2 == 0): cutover(params, forth), 1)[0]
                                               for i in range(args.iterations)]
                if args.iterations % 2:
                    cutover(params, False)
        finally:
            cluster.stop()
        played = counts.totals(counts.read(Path(tmp) / "counts.jsonl")) if not args.no_playbook else None

    print()
    print("3-node cluster on loopback, %d CPUs; filler streams R1, migration streams R%d; %d in-process samples, "
          "%d playbook tasks per size; %.0fs in all"
          % (os.cpu_count() or 0, args.replicas, args.iterations, args.tasks, time.monotonic() - started))
    print("%-18s %8s %10s %8s %7s" % ("operation", "streams", "median ms", "p90 ms", "growth"))
    for row, _desc in ROWS:
        if (row, sizes[0]) not in results:
            continue
        base = statistics.median(results[(row, sizes[0])])
        for size in sizes:
            values = results[(row, size)]
            med = statistics.median(values)
            print("%-18s %8d %10.1f %8.1f %6.2fx" % (row if size == sizes[0] else "", size, med * 1000,
                                                     p90(values) * 1000, med / base))
    print("times in ms; growth = median / median at %d streams" % sizes[0])
    if played:
        print("ansible-playbook runs: %d, %s" % (played["playbooks"], counts.describe(played)))
    for row, desc in ROWS:
        print("  %-18s %s" % (row, desc))


if __name__ == "__main__":
    main()
