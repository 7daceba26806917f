"""Per-task cost of this collection's modules next to a core module, in one playbook.

Starts a 1-node nats-server, creates a stream, then runs one playbook on localhost that interleaves
N no-op ``athlete_ally.nats.jetstream_stream`` tasks (the same, unchanged config: connect, STREAM.INFO,
compare, exit), N ``athlete_ally.nats.jetstream_info`` tasks (gather the one stream) and N
``ansible.builtin.stat`` tasks. Task times come from the ansible.posix.json callback (start/end of each
task), so they include what an operator waits for: AnsiballZ payload, fork/exec, Python start, imports,
the module's work. The first task of each kind is a warm-up and not counted; its time is printed apart ("first s"):
that is where Ansible builds the module's payload, once per ansible-playbook process. Modules run as Ansible ships
them (no cache of any kind). Each run also prints its task and module-run counts (bench/counts.py).

Prints mean/median per kind and the ratio to ``stat`` (target: <= 1.2x). With ``--runs N`` the playbook
runs N times (each with its warm-up) and the ratios of every run are summarized: median, min and max over
the runs. No assertions on time.

    .venv/bin/python bench/module_overhead.py [--tasks 20] [--runs 1]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import counts  # noqa: E402
from lab.ansible_run import run_playbook_file  # noqa: E402
from lab.nats_cluster import NatsCluster  # noqa: E402

STREAM = dict(name="BENCH", subjects=["bench.>"], storage="file", max_age="1h", replicas=1)


def kinds(url, stat_path):
    """label -> (module, args); only modules present in plugins/modules are benchmarked."""
    present = set(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
    out = {}
    if "jetstream_stream" in present:
        out["jetstream_stream (no-op)"] = ("athlete_ally.nats.jetstream_stream", dict(STREAM, servers=[url]))
    if "jetstream_info" in present:
        out["jetstream_info (one stream)"] = ("athlete_ally.nats.jetstream_info",
                                              dict(servers=[url], gather=["stream"], stream=STREAM["name"]))
    out["ansible.builtin.stat"] = ("ansible.builtin.stat", dict(path=stat_path))
    return out


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_once(plan, ntasks, tmp):
    """One playbook: setup + (ntasks + 1) rounds of every kind; per-kind task durations and changed counts."""
    tasks = []
    if "jetstream_stream (no-op)" in plan:  # create (or keep) the stream first, outside the timed set
        tasks.append({"name": "setup create stream", plan["jetstream_stream (no-op)"][0]:
                      plan["jetstream_stream (no-op)"][1]})
    for i in range(ntasks + 1):  # +1: warm-up round
        for label, (module, margs) in plan.items():
            tasks.append({"name": "%s #%d" % (label, i), module: margs})
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]
    path = Path(tmp) / "bench.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    counted = Path(tmp) / "counts.jsonl"
    if counted.exists():
        counted.unlink()
    res = run_playbook_file(path, ["-i", "localhost,"], env=counts.callback_env(counted, {"ANSIBLE_FORKS": "1"}),
                            timeout=1800)
    if res.rc != 0 or res.data is None:
        print(res.stdout[-3000:], res.stderr[-3000:])
        sys.exit("benchmark playbook failed (rc %s)" % res.rc)
    times = {label: [] for label in plan}
    first = {}
    changed = {label: 0 for label in plan}
    for play_out in res.data["plays"]:
        for task in play_out["tasks"]:
            name = task["task"]["name"]
            label, _sep, idx = name.rpartition(" #")
            if label not in times:
                continue
            dur = task["task"]["duration"]
            seconds = (parse_time(dur["end"]) - parse_time(dur["start"])).total_seconds()
            if idx == "0":
                first[label] = seconds
                continue
            times[label].append(seconds)
            host = next(iter(task["hosts"].values()))
            changed[label] += bool(host.get("changed"))
    return times, first, changed, counts.totals(counts.read(counted))


def create_stream_directly(url):
    import asyncio
    import json
    import nats

    async def create():
        nc = await nats.connect(url)
        body = {"name": STREAM["name"], "subjects": STREAM["subjects"], "num_replicas": 1}
        await nc.request("$JS.API.STREAM.CREATE.BENCH", json.dumps(body).encode(), timeout=5)
        await nc.close()
    asyncio.run(create())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--tasks", type=int, default=20, help="timed tasks per kind (default 20)")
    parser.add_argument("--runs", type=int, default=1, help="playbook runs, summarized at the end (default 1)")
    args = parser.parse_args()

    runs = []
    with tempfile.TemporaryDirectory(prefix="aa-nats-bench-") as tmp:
        node = NatsCluster(Path(tmp) / "nats", size=1, name="bench").start()
        try:
            url = node.urls[0]
            stat_path = str(Path(tmp) / "stat-me")
            Path(stat_path).write_text("x", encoding="utf-8")
            plan = kinds(url, stat_path)
            if "jetstream_stream (no-op)" not in plan:
                create_stream_directly(url)
            for run in range(args.runs):
                times, first, changed, total = run_once(plan, args.tasks, tmp)
                runs.append(times)
                base = statistics.median(times["ansible.builtin.stat"])
                if args.runs > 1:
                    print("run %d:" % (run + 1))
                print("per-task wall time, %d timed tasks per kind (1 warm-up each), one playbook, forks=1, %d CPUs"
                      % (args.tasks, os.cpu_count() or 0))
                print("%-30s %9s %9s %9s %9s %8s %8s %s"
                      % ("task", "mean s", "median s", "min s", "max s", "ratio", "first s", "changed"))
                for label, values in times.items():
                    med = statistics.median(values)
                    row = (label, statistics.mean(values), med, min(values), max(values), med / base, first[label],
                           changed[label])
                    print("%-30s %9.3f %9.3f %9.3f %9.3f %7.2fx %8.3f %d" % row)
                print("ratio = median / median of ansible.builtin.stat; target <= 1.2x; first = the warm-up task "
                      "(payload built in this process)")
                print("the playbook: %s, %.1f s" % (counts.describe(total), total["seconds"]), flush=True)
        finally:
            node.stop()

    if args.runs > 1:
        print()
        print("over %d runs: ratio of the median task time to stat's, per run" % args.runs)
        print("%-30s %8s %8s %8s  %s" % ("task", "median", "min", "max", "per run"))
        for label in runs[0]:
            ratios = [statistics.median(t[label]) / statistics.median(t["ansible.builtin.stat"]) for t in runs]
            print("%-30s %7.2fx %7.2fx %7.2fx  %s" % (label, statistics.median(ratios), min(ratios), max(ratios),
                                                      " ".join("%.2f" % r for r in ratios)))


if __name__ == "__main__":
    main()
