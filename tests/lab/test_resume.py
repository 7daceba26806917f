"""Every step resumes, and every phase rides through a leader election, under load, on the lab, in one pass (each
stage starts where the last ended):

- the playbook's whole process group is SIGKILLed (an operator's dropped connection, a cancelled AWX job) after the
  service was bound, right after the subjects moved, during the source catch-up, and in a rollback after the
  subjects returned; the same playbook run again finishes;
- while phases 0, 1 and 2 run, the leader of the stream they work on is SIGKILLed and its node comes back 8 s later;
  the phase completes in that one run;
- a finished phase run again changes nothing, phase 3 runs afterwards, and the loss ledger shows nothing lost.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from lab.ansible_run import REPO, playbook_env
from tests.support.jsapi import api

sys.path.insert(0, str(REPO))
from lab.interrupt import run_killed  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

LEGACY, VENDOR, CORE = "ATHLETE_ALLY_EVENTS", "AA_VENDOR_HOT", "AA_CORE_HOT"
NODE_DOWN_S = 8


def playbook(name, *args):
    return [str(REPO / ".venv" / "bin" / "ansible-playbook"), str(REPO / "playbooks" / name)] + list(args)


def stream(lab, name):
    reply = api(lab.env["NATS_URL"], "STREAM.INFO." + name, user=lab.env["NATS_USER"],
                password=lab.env["NATS_PASSWORD"])
    return None if "error" in reply else reply


def killed(lab, cmd, **trigger):
    run = run_killed(cmd, playbook_env(), str(REPO), timeout=600, **trigger)
    assert run["killed"], "the run ended (rc %s) before the kill moment %s:\n%s" % (
        run["rc"], trigger, run["output"][-3000:])
    return run


def completes(cmd, lab=None, leader_of=None, at_task=None):
    """Run to the end; with ``leader_of``, SIGKILL that stream's leader when ``at_task`` starts (back 8 s later)."""
    faults = []

    def leader_down_and_back():
        out = lab.fault("kill-leader", leader_of)
        time.sleep(NODE_DOWN_S)
        lab.fault("restart-nats", out["leader"])
        faults.append(out["leader"])

    run = run_killed(cmd, playbook_env(), str(REPO), timeout=600, task=at_task,
                     action=leader_down_and_back if leader_of else None)
    assert run["rc"] == 0, "run failed (rc %s)%s:\n%s" % (
        run["rc"], " with the %s leader killed at '%s'" % (leader_of, at_task) if leader_of else "",
        run["output"][-5000:])
    if leader_of:
        assert run["at"] and faults, "the leader of %s was not killed and brought back during the run" % leader_of
    return run


def core_moved_with_sources(lab):
    info = stream(lab, CORE)
    return bool(info and info["config"].get("subjects") and info["config"].get("sources"))


def start_load(lab, tmp_path):
    """Steady load until the stop file appears (the stages take as long as they take)."""
    ledger, stop = tmp_path / "ledger.jsonl", tmp_path / "stop"
    cmd = [sys.executable, str(REPO / "lab" / "loadgen.py"), "--run-id", "rs%s" % uuid.uuid4().hex[:4],
           "--rate", str(lab.soak["rate_per_s"]), "--vendor-ratio", str(lab.soak["vendor_ratio"]),
           "--ledger", str(ledger), "--stop-file", str(stop), "--env", str(lab.dir / "env")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), ledger, stop


def test_killed_anywhere_rerun_finishes_rides_leader_elections_and_nothing_is_lost(lab, tmp_path):
    load, ledger, stop = start_load(lab, tmp_path)
    try:
        completes(playbook("preflight.yml"))  # the go/no-go gate: phases 0-2 need a passed preflight
        completes(playbook("phase0.yml"), lab, leader_of="AA_DLQ", at_task="Publish a test message")

        # Phase 1: killed once the service reads the new stream, before the cut-over.
        killed(lab, playbook("phase1.yml"), task="Verify dual processing before the cut-over")
        assert stream(lab, VENDOR)["config"].get("sources"), "the kill came too late: already cut over"
        assert "vendor.>" in stream(lab, LEGACY)["config"]["subjects"]
        completes(playbook("phase1.yml"), lab, leader_of=LEGACY, at_task="Drain the legacy consumers up to")
        meta = stream(lab, VENDOR)["config"]["metadata"]
        assert meta.get("aa.migration.phase1.cutover_seq") and meta.get("aa.migration.phase1.completed_at"), meta

        # Phase 2: killed right after the subjects moved, before anything else.
        killed(lab, playbook("phase2.yml"), task="Report the cut-over")
        meta = stream(lab, CORE)["config"]["metadata"]
        assert meta.get("aa.migration.phase2.cutover_seq"), "the cut-over record must come with the move: %s" % meta
        assert not meta.get("aa.migration.phase2.verified_at"), meta
        completes(playbook("phase2.yml"))
        assert stream(lab, CORE)["config"]["metadata"].get("aa.migration.phase2.completed_at")

        # Rollback of phase 2: killed after the subjects returned, before the new stream is removed.
        killed(lab, playbook("phase2.yml", "--tags", "rollback"),
               task="Read the new consumers after the subjects returned")
        assert stream(lab, CORE) is not None, "the kill came too late: the new stream is gone"
        assert "athlete-ally.>" in stream(lab, LEGACY)["config"]["subjects"]
        completes(playbook("phase2.yml", "--tags", "rollback"))
        assert stream(lab, CORE) is None
        assert stream(lab, LEGACY)["config"]["metadata"].get("aa.migration.phase2.rolled_back_at")

        # Phase 2 again: killed while the shadow sources catch up after the move.
        killed(lab, playbook("phase2.yml"), when=lambda: core_moved_with_sources(lab))
        completes(playbook("phase2.yml"), lab, leader_of=CORE, at_task="Move the subjects")

        # Run again, a finished phase changes nothing.
        for name in ("phase1.yml", "phase2.yml"):
            again = completes(playbook(name))
            recap = [line for line in again["output"].splitlines() if line.startswith("localhost")][-1]
            assert " changed=0 " in recap and " failed=0 " in recap, "%s run again: %s" % (name, recap)

        # Phase 3 reads the clock and the cut-over seq from the journal: it must pass, not blame a publisher.
        completes(playbook("phase3.yml", "-e", "migration_legacy_retention_seconds=0"))
        assert stream(lab, LEGACY) is None
    finally:
        stop.touch()
        lab.finish_load(load, timeout=120)
    report = lab.check_ledger(ledger, settle_s=30)
    assert report["lost"] == 0 and report["unexpected"] == 0, {k: v for k, v in report.items() if "_ids" not in k}
