"""Playbook runs for the rollback tests (tests/lab/test_rollback_*.py): soaks off, Prometheus unused, since those
tests are about the rollback; each run timed and printed, and ``ok`` names the failed tasks."""

from __future__ import annotations

import time

from lab.ansible_run import REPO, run_playbook_file

QUICK = ["-e", "migration_soak_seconds=0", "-e", "migration_prometheus_url="]


def play(name, *args):
    t0 = time.monotonic()
    res = run_playbook_file(REPO / "playbooks" / name, list(QUICK) + list(args), timeout=600)
    res.seconds = round(time.monotonic() - t0, 1)
    print("%-60s %5.1f s rc %s" % (" ".join([name] + list(args)), res.seconds, res.rc))
    return res


def ok(res):
    failed = [(t["_name"], t.get("msg")) for t in res.tasks if t.get("failed") and not t.get("ignored")]
    assert res.rc == 0, "%s\n%s" % (failed, res.stdout[-3000:] + res.stderr[-2000:])
    return res
