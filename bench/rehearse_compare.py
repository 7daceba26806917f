"""`make rehearse` of two revisions, back to back on this machine, each as a fresh clone would run it.

Each side is a ``git clone`` of this repository at a revision into ``--workdir`` (default /tmp/aa-rehearse-compare),
where ``make setup`` builds that revision's own venv exactly as a newcomer's would (with whatever that revision
installs into it: before issue 18, the interpreter hooks); ``--after .`` uses this checkout and its venv instead
(uncommitted changes included). Then ``make rehearse`` runs alternately on each side, ``--runs`` times, on one
private lab (lab/private_lab.py ``--offset``; each clone has its own lab directory), never two at once. Prints each
run's wall time of ``make rehearse``, the ``total`` the rehearsal reports, the CPU seconds of everything it ran
and waited for (playbooks, module runs, load generator, ledger; not the lab's daemons), its tasks and module runs
(when the revision counts them), the load average at the start, and the medians.

    .venv/bin/python bench/rehearse_compare.py --before 1dd16f9 [--after HEAD|.] [--runs 3] [--offset 1300]

The first ``make setup`` of a clone installs the dev lock from the package index (a few minutes, about 1.2 GB).
Compare on a quiet machine: other work on the box shows up in both columns, unevenly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def resolve(rev):
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=str(REPO), capture_output=True, text=True,
                          check=True).stdout.strip()


def checkout(rev, workdir):
    """A clone of this repository at ``rev`` under ``workdir``, set up by its own ``make setup``; its path."""
    if rev == ".":
        return REPO
    dest = Path(workdir) / resolve(rev)
    if not (dest / ".git").exists():
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "checkout", "--quiet", "--detach", resolve(rev)], cwd=str(dest), check=True)
    print("make setup in %s ..." % dest, flush=True)
    setup = subprocess.run(["make", "setup"], cwd=str(dest), env=clean_env(), capture_output=True, text=True,
                           check=False)
    if setup.returncode:
        raise SystemExit("make setup failed in %s:\n%s" % (dest, (setup.stdout + setup.stderr)[-3000:]))
    return dest


def clean_env():
    """This environment without anything that selects a lab, an Ansible config or the old hooks' switch."""
    drop = ("ANSIBLE_", "AA_", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def rehearse(tree, offset):
    """One ``make rehearse`` in ``tree`` on the private lab ``offset``: wall seconds and its report.json."""
    env = dict(clean_env(), **private_lab_env(tree, offset))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    started, cpu = time.monotonic(), cpu_seconds()
    proc = subprocess.run(["make", "rehearse"], cwd=str(tree), env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.monotonic() - started, cpu_seconds() - cpu
    report_path = Path(env["AA_LAB_DIR"]) / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if proc.returncode:
        print(proc.stdout[-2000:] + proc.stderr[-2000:])
    return dict(wall=wall, cpu=cpu, rc=proc.returncode, load=load, total=report.get("total_seconds"),
                lost=report.get("lost"), counts=report.get("counts") or {})


def cpu_seconds():
    """User + system CPU of every finished child and what it waited for: the rehearsal's playbooks, module runs,
    load generator and ledger, not the lab's daemons (supervisord detaches). Less sensitive than wall time to other
    work on the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def private_lab_env(tree, offset):
    """What ``eval "$(lab/private_lab.py --offset N)"`` exports, for the lab of ``tree``."""
    out = subprocess.run([str(Path(tree) / ".venv" / "bin" / "python"), "lab/private_lab.py", "--offset",
                          str(offset)], cwd=str(tree), capture_output=True, text=True, check=True).stdout
    env = {}
    for line in out.splitlines():
        key, _sep, value = line.replace("export ", "", 1).partition("=")
        env[key] = value.strip("'\"")
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--before", required=True, help="revision measured first in each pair")
    ap.add_argument("--after", default="HEAD", help="revision measured second, or . for this checkout (HEAD)")
    ap.add_argument("--runs", type=int, default=3, help="pairs of runs (default 3)")
    ap.add_argument("--offset", type=int, default=1300, help="private lab port offset (default 1300)")
    ap.add_argument("--workdir", default="/tmp/aa-rehearse-compare", help="where the clones go")
    args = ap.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    revs = [("before " + args.before, args.before), ("after " + args.after, args.after)]
    sides = [(label, checkout(rev, args.workdir)) for label, rev in revs]
    results = {label: [] for label, _tree in sides}
    print("%-22s %4s %8s %8s %7s %6s %12s %5s  %s" % ("rev", "run", "wall s", "total s", "CPU s", "tasks",
                                                      "module runs", "lost", "load at start"))
    for run in range(1, args.runs + 1):
        for label, tree in sides:
            res = rehearse(tree, args.offset)
            results[label].append(res)
            print("%-22s %4d %8.1f %8s %7.1f %6s %12s %5s  %s%s" % (
                label, run, res["wall"], res["total"], res["cpu"], res["counts"].get("tasks", "-"),
                res["counts"].get("module_runs", "-"), res["lost"], res["load"],
                "" if res["rc"] == 0 else "  FAILED (rc %d)" % res["rc"]), flush=True)
    print()
    for label, runs in results.items():
        ok = [r for r in runs if r["rc"] == 0]
        if ok:
            print("%-22s median wall %.1f s, median total %.1f s, median CPU %.1f s over %d passing runs" % (
                label, statistics.median(r["wall"] for r in ok),
                statistics.median(r["total"] for r in ok if r["total"] is not None),
                statistics.median(r["cpu"] for r in ok), len(ok)))
    return 0 if all(r["rc"] == 0 for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
