#!/usr/bin/env python3
"""`make rehearse`: the whole migration, under load, on the local lab; then the loss report.

lab up -> load generator on -> preflight, phase0, phase1, phase2, validate, phase3 (retention clock shortened)
-> load off -> ledger check -> .lab/report.json and .lab/report.html (timeline from the lab's Prometheus: events/s,
consumer lag, phases, cut-overs, publish gap; ledger table) -> lab down (always; labctl down, what
playbooks/lab_down.yml runs).

Prints each playbook's time, tasks, module runs and CPU seconds (the run_counts callback, bench/counts.py) and their
totals, the ledger counts and the longest publish gap. Exit status 0 only if every phase
passed and nothing was lost, unexpected or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO))
from bench import counts  # noqa: E402 - the run_counts callback's environment and its records
PHASES = [
    ("preflight", "playbooks/preflight.yml", []),
    ("phase0", "playbooks/phase0.yml", []),
    ("phase1", "playbooks/phase1.yml", []),
    ("phase2", "playbooks/phase2.yml", []),
    ("validate", "playbooks/validate.yml", []),
    # The 14-day clock, shortened so the rehearsal also deletes the legacy stream.
    ("phase3", "playbooks/phase3.yml", ["-e", "migration_legacy_retention_seconds=0"]),
]


def env():
    e = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
             ANSIBLE_DEPRECATION_WARNINGS="false", PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
    # every task's time in the log, and the slowest ones at each playbook's end: where a rehearsal's time goes
    e.setdefault("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.profile_tasks")
    e.setdefault("PROFILE_TASKS_TASK_OUTPUT_LIMIT", "15")
    return e


def playbook_env(counts_file):
    """env() plus the run_counts callback (bench/callback_plugins): tasks and module runs of each playbook."""
    return counts.callback_env(counts_file, env())


def lab_dir():
    return Path(os.environ.get("AA_LAB_DIR") or REPO / ".lab")


def playbook(path, args=(), log=None, counts_file=None):
    """Return code of one ansible-playbook run, its output appended to ``log``; with ``counts_file`` the run_counts
    callback appends the run's tasks and module runs to it."""
    cmd = [str(BIN / "ansible-playbook"), str(REPO / path)] + list(args)
    with open(log, "a") if log else open(os.devnull, "w") as out:
        out.write("\n$ %s\n" % " ".join(cmd))
        out.flush()
        return subprocess.run(cmd, cwd=str(REPO), env=playbook_env(counts_file) if counts_file else env(), stdout=out,
                              stderr=subprocess.STDOUT, check=False).returncode


def children_cpu():
    """CPU seconds (user + system) of every finished child process so far, theirs included (each waits for its
    own): an ansible-playbook run and its module runs, not the lab's daemons (supervisord detaches from it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def counted_playbook(path, args, log, counts_file):
    """(return code, the run's run_counts record or None if it wrote none, e.g. killed) of playbook(); the record
    gets the run's CPU seconds, which other work on the machine changes much less than the run's wall time."""
    before, cpu = len(counts.read(counts_file)), children_cpu()
    rc = playbook(path, args, log, counts_file)
    records = counts.read(counts_file)[before:]
    record = records[-1] if records else None
    if record:
        record["cpu_seconds"] = round(children_cpu() - cpu, 1)
    return rc, record


def phase_line(name, seconds, record, verdict=""):
    """``phase1   23.0 s   96 tasks   21 module runs   9.8 s CPU  ok``; counts missing (a playbook killed early)
    show as ?."""
    tasks, runs, cpu = (record["tasks"], record["module_runs"], record["cpu_seconds"]) if record else ("?",) * 3
    return ("%-10s %6.1f s  %4s tasks  %3s module runs  %5s s CPU  %s" % (name, seconds, tasks, runs, cpu,
                                                                          verdict)).rstrip()


def import_report_modules():
    """Import what write_html needs (matplotlib: about 1.3 s of CPU) while the phases run and this process only
    waits; write_html's own import then finds them loaded (or waits for this one to finish)."""
    sys.path.insert(0, str(REPO))

    def load():
        try:
            from lab import labenv, report  # noqa: F401
        except Exception:  # noqa: BLE001 - write_html imports again and reports the error
            pass
    threading.Thread(target=load, daemon=True).start()


def write_html(lab, report, ledger, wall_started, spans):
    """report.html from the lab's Prometheus (before the lab goes down); a failure here never hides report.json."""
    t0 = time.monotonic()
    sys.path.insert(0, str(REPO))
    try:
        from lab import labenv, report as report_html  # matplotlib: a venv without it still gets report.json
        from lab.ledger import read_ledger
        env = labenv.load(lab / "env")
        recs = read_ledger(ledger) if ledger.exists() else []
        page = report_html.build(report, recs, env.get("PROMETHEUS_URL"), wall_started, time.time(), spans)
        (lab / "report.html").write_text(page)
        print("report.html written in %.1f s" % (time.monotonic() - t0), flush=True)
    except Exception as exc:  # noqa: BLE001 - the JSON report and the exit status stand on their own
        print("report.html not written: %s" % exc)


def lab_down(lab, wipe=False):
    """What playbooks/lab_down.yml runs (labctl down; with ``wipe`` the lab dir goes too), without an
    ansible-playbook start of its own: the rehearsal's time is the migration's, not the lab's housekeeping."""
    if lab.exists():
        down = subprocess.run([str(BIN / "python"), str(REPO / "lab" / "labctl.py"), "down", "--lab-dir", str(lab),
                               "--conf", str(lab / "supervisord.conf"), "--supervisorctl", str(BIN / "supervisorctl")],
                              cwd=str(REPO), env=env(), capture_output=True, text=True, check=False)
        if down.returncode:
            raise SystemExit("lab down failed: %s" % (down.stdout or down.stderr).strip()[-500:])
    if wipe:
        shutil.rmtree(lab, ignore_errors=True)


def wait_for_first_event(ledger, load, timeout=15.0):
    """Until the load generator has recorded its first event (flushed per event), so the phases start under load."""
    deadline = time.monotonic() + timeout
    while not (ledger.exists() and ledger.stat().st_size > 0):
        if load.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the load generator recorded no event within %ss; see %s" % (timeout, ledger))
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20.0, help="load events per second (default 20)")
    ap.add_argument("--keep-lab", action="store_true", help="leave the lab running afterwards")
    ap.add_argument("--extra", action="append", default=[], help="extra ansible-playbook args for every phase")
    args = ap.parse_args()

    lab = lab_dir()
    # A rehearsal starts from nothing: stop any lab and wipe its state (streams, database, ledgers).
    lab_down(lab, wipe=True)
    import_report_modules()
    lab.mkdir(parents=True, exist_ok=True)
    log = lab / "rehearse.log"
    log.write_text("")
    ledger = lab / "rehearse-ledger.jsonl"
    stop = lab / "rehearse.stop"
    counts_file = lab / "rehearse-counts.jsonl"
    for f in (ledger, stop, counts_file):
        if f.exists():
            f.unlink()
    report = dict(phases={}, tasks={}, module_runs={}, cpu_seconds={}, ok=False)
    spans = []  # (phase, wall start, wall end) for the report's timeline
    started = time.monotonic()
    wall_started = time.time()
    load = None
    try:
        print("lab up ...", flush=True)
        rc, record = counted_playbook("playbooks/lab_up.yml", args.extra, log, counts_file)
        if rc:
            raise SystemExit("lab did not come up; see %s" % log)
        spans.append(("lab up", wall_started, time.time()))
        report["lab_up_seconds"] = round(time.monotonic() - started, 1)
        report["cpu_seconds"]["lab up"] = record and record["cpu_seconds"]
        print(phase_line("lab up", report["lab_up_seconds"], record), flush=True)
        load = subprocess.Popen([str(BIN / "python"), str(REPO / "lab" / "loadgen.py"), "--rate", str(args.rate),
                                 "--stop-file", str(stop), "--ledger", str(ledger)],
                                cwd=str(REPO), env=env(), stdout=open(lab / "rehearse-load.out", "w"),
                                stderr=subprocess.STDOUT)
        wait_for_first_event(ledger, load)
        for name, path, extra in PHASES:
            t0, w0 = time.monotonic(), time.time()
            rc, record = counted_playbook(path, list(extra) + args.extra, log, counts_file)
            spans.append((name, w0, time.time()))
            report["phases"][name] = round(time.monotonic() - t0, 1)
            report["tasks"][name] = record and record["tasks"]
            report["module_runs"][name] = record and record["module_runs"]
            report["cpu_seconds"][name] = record and record["cpu_seconds"]
            print(phase_line(name, report["phases"][name], record, "ok" if rc == 0 else "FAILED"), flush=True)
            if rc != 0:
                report["failed_phase"] = name
                break
    finally:
        if load is not None:
            t_stop = time.monotonic()
            stop.touch()
            load.wait(60)
            check = subprocess.run([str(BIN / "python"), str(REPO / "lab" / "ledger.py"), "check", "--ledger",
                                    str(ledger), "--settle-s", "30", "--out", str(lab / "ledger-report.json")],
                                   cwd=str(REPO), env=env(), capture_output=True, text=True, check=False)
            try:
                checked = json.loads(check.stdout)
            except ValueError:
                checked = {"error": (check.stderr or check.stdout)[-500:]}
            for key in ("sent", "acked", "lost", "unexpected", "duplicates", "duplicate_deliveries", "unknown",
                        "publish_gap_ms"):
                report[key] = checked.get(key)
            report["load_stop_and_ledger_seconds"] = round(time.monotonic() - t_stop, 1)
            print("%-10s %6.1f s" % ("ledger", report["load_stop_and_ledger_seconds"]), flush=True)
        report["total_seconds"] = round(time.monotonic() - started, 1)
        # every playbook of the rehearsal, lab up included: what bench/counts.py calls tasks and module runs
        report["counts"] = counts.totals(counts.read(counts_file))
        report["counts"]["cpu_seconds"] = round(sum(v for v in report["cpu_seconds"].values() if v), 1)
        report["ok"] = (not report.get("failed_phase") and len(report["phases"]) == len(PHASES)
                        and report.get("lost") == 0 and report.get("unexpected") == 0
                        and report.get("duplicates") == 0)
        (lab / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        write_html(lab, report, ledger, wall_started, spans)
        if not args.keep_lab:
            lab_down(lab)
    print("sent %(sent)s, acked %(acked)s, lost %(lost)s, unexpected %(unexpected)s, duplicates %(duplicates)s "
          "(duplicate deliveries %(duplicate_deliveries)s), unknown %(unknown)s, longest publish gap "
          "%(publish_gap_ms)s ms, total %(total_seconds)s s" % report)
    print("%d playbooks, %.1f s CPU: %s" % (report["counts"]["playbooks"], report["counts"]["cpu_seconds"],
                                            counts.describe(report["counts"])))
    print("report: %s, %s; log: %s" % (lab / "report.json", lab / "report.html", log))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
