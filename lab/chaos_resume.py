#!/usr/bin/env python3
"""Chaos for resumability: SIGKILL phases 1-2 at N random moments, re-run each, and count what was lost.

Each round kills the next phase to do (1, then 2) after a random delay, reads where the group was left (the
migration_state the playbooks use), re-runs the phase and records its outcome; after phase 2 completes, the
emergency rollback returns the lab to the start so the next rounds migrate again. Load runs throughout; the
ledger is checked at the end. Prints a table and writes it to <lab>/chaos.json. Needs a running lab
(`make lab-up`); `--fresh` wipes and starts one first.

  lab/chaos_resume.py -n 10 --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / ".collections"))
from lab import labenv  # noqa: E402
from lab.interrupt import run_killed  # noqa: E402
from lab.rehearse import env as playbook_env, lab_dir, playbook  # noqa: E402

import yaml  # noqa: E402

BIN = REPO / ".venv" / "bin"
# How long an uninterrupted run of each phase takes, first guess: the kill moment is drawn from [1 s, this]. A run
# that ends before its kill replaces the guess with its own duration, so the moments follow this machine's pace
# (a fixed 60 s, written when a phase took that long, let 8 of 10 runs end first once the phases took 25 s).
FIRST_GUESS_SECONDS = {1: 30.0, 2: 30.0}


def migration_plan():
    data = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "migration.yml").read_text())
    return data["migration"]


def steps_now(lab_env, plan):
    """{phase: step} read the way the playbooks read it."""
    from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import JetStreamClient
    from ansible_collections.athlete_ally.nats.plugins.module_utils.migration_state import read

    params = dict(servers=lab_env["NATS_URL"].split(","), user=lab_env["NATS_USER"],
                  password=lab_env["NATS_PASSWORD"], request_timeout=5.0)
    with JetStreamClient(params) as js:
        state = read(js, plan["legacy"]["stream"], plan["groups"])
    return {int(p): s for p, s in state["steps"].items()}


def last_task(output):
    tasks = [line for line in output.splitlines() if line.startswith("TASK [")]
    if not tasks:
        return "-"
    name = tasks[-1][len("TASK ["):].split("]")[0].replace("|", "/")
    return name.split(" : ", 1)[-1][:60]


def more_rounds(rows, n):
    """Until N runs were killed; a round whose run ended before its kill moment does not count (at most 3N rounds)."""
    return sum(r["killed"] for r in rows) < n and len(rows) < 3 * n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10, help="number of kills (default 10)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rate", type=float, default=20.0, help="load events per second")
    ap.add_argument("--fresh", action="store_true", help="wipe and start the lab first")
    ap.add_argument("--extra", action="append", default=[], help="extra ansible-playbook args for every run")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    plan = migration_plan()
    lab = lab_dir()
    if args.fresh:
        playbook("playbooks/lab_down.yml", ["-e", "lab_wipe=true"] + args.extra)
        if playbook("playbooks/lab_up.yml", args.extra):
            raise SystemExit("lab did not come up")
    lab_env = labenv.load()
    ledger, stop = lab / "chaos-ledger.jsonl", lab / "chaos.stop"
    for f in (ledger, stop):
        if f.exists():
            f.unlink()
    log = open(lab / "chaos.log", "w")
    load = subprocess.Popen([str(BIN / "python"), str(REPO / "lab" / "loadgen.py"), "--rate", str(args.rate),
                             "--stop-file", str(stop), "--ledger", str(ledger), "--env", str(lab / "env")],
                            cwd=str(REPO), stdout=open(lab / "chaos-load.out", "w"), stderr=subprocess.STDOUT)
    rows = []
    try:
        if playbook("playbooks/preflight.yml", args.extra, log=str(lab / "chaos-preflight.log")):
            raise SystemExit("preflight failed; see %s" % (lab / "chaos-preflight.log"))
        if playbook("playbooks/phase0.yml", args.extra, log=str(lab / "chaos-phase0.log")):
            raise SystemExit("phase 0 failed; see %s" % (lab / "chaos-phase0.log"))
        typical = dict(FIRST_GUESS_SECONDS)
        while more_rounds(rows, args.n):
            steps = steps_now(lab_env, plan)
            phase = 1 if steps[1] != "complete" else 2
            delay = round(rng.uniform(1.0, typical[phase]), 1)
            cmd = [str(BIN / "ansible-playbook"), str(REPO / "playbooks" / ("phase%d.yml" % phase))] + args.extra
            cut = run_killed(cmd, playbook_env(), str(REPO), after=delay, timeout=900, log=log)
            if not cut["killed"]:
                typical[phase] = cut["seconds"]
            at_kill = steps_now(lab_env, plan)[phase]
            rerun = run_killed(cmd, playbook_env(), str(REPO), timeout=900, log=log)
            row = dict(n=len(rows) + 1, phase=phase, kill_after_s=delay, killed=cut["killed"],
                       last_task=last_task(cut["output"]), step_at_kill=at_kill, rerun_rc=rerun["rc"],
                       rerun_s=rerun["seconds"], step_after=steps_now(lab_env, plan)[phase])
            rows.append(row)
            print("%(n)2d phase %(phase)d killed after %(kill_after_s)5.1fs (%(killed)s) at '%(last_task)s' "
                  "step %(step_at_kill)s -> re-run rc %(rerun_rc)s in %(rerun_s)ss -> %(step_after)s" % row,
                  flush=True)
            if rerun["rc"] != 0:
                break
            if phase == 2 and more_rounds(rows, args.n):
                back = run_killed([str(BIN / "ansible-playbook"), str(REPO / "playbooks" / "rollback.yml")]
                                  + args.extra, playbook_env(), str(REPO), timeout=900, log=log)
                if back["rc"] != 0:
                    raise SystemExit("emergency rollback failed; see %s" % (lab / "chaos.log"))
    finally:
        stop.touch()
        load.wait(120)
    time.sleep(1)
    check = subprocess.run([str(BIN / "python"), str(REPO / "lab" / "ledger.py"), "check", "--ledger", str(ledger),
                            "--settle-s", "30", "--env", str(lab / "env")],
                           cwd=str(REPO), env=playbook_env(), capture_output=True, text=True, check=False)
    counts = json.loads(check.stdout) if check.stdout.strip().startswith("{") else {"error": check.stderr[-500:]}
    summary = {k: counts.get(k) for k in ("sent", "acked", "lost", "unexpected", "duplicates", "publish_gap_ms")}
    print("\n| # | phase | kill after s | killed | last task started | step at kill | re-run rc | re-run s | step after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %(n)d | %(phase)d | %(kill_after_s)s | %(killed)s | %(last_task)s | %(step_at_kill)s | %(rerun_rc)s "
              "| %(rerun_s)s | %(step_after)s |" % dict(r, killed="yes" if r["killed"] else "no (ended first)"))
    print("\nledger: %s" % json.dumps(summary))
    (lab / "chaos.json").write_text(json.dumps(dict(rounds=rows, ledger=summary), indent=2) + "\n")
    kills = sum(r["killed"] for r in rows)
    print("%d kills in %d rounds (a round whose run ended before its kill moment is not a kill)" % (kills, len(rows)))
    ok = all(r["rerun_rc"] == 0 and r["step_after"] == "complete" for r in rows) and summary.get("lost") == 0
    return 0 if ok and kills == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
