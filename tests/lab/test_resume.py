"""Every step resumes: the playbook's whole process group is SIGKILLed (an operator's dropped connection, a cancelled
AWX job) at the moments that matter, the same playbook is run again and finishes, phase 3 can run afterwards, and
the loss ledger shows nothing lost. All under load, on the lab, in one pass (each stage starts where the last ended).
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.support.ansible_run import REPO, playbook_env
from tests.support.jsapi import api

sys.path.insert(0, str(REPO))
from lab.interrupt import run_killed  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

LEGACY, VENDOR, CORE = "ATHLETE_ALLY_EVENTS", "AA_VENDOR_HOT", "AA_CORE_HOT"


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


def completes(cmd):
    run = run_killed(cmd, playbook_env(), str(REPO), timeout=600)
    assert run["rc"] == 0, "re-run failed (rc %s):\n%s" % (run["rc"], run["output"][-5000:])
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


def test_killed_anywhere_rerun_finishes_and_nothing_is_lost(lab, tmp_path):
    load, ledger, stop = start_load(lab, tmp_path)
    try:
        completes(playbook("phase0.yml"))

        # Phase 1: killed once the service reads the new stream, before the cut-over.
        killed(lab, playbook("phase1.yml"), task="Verify dual processing before the cut-over")
        assert stream(lab, VENDOR)["config"].get("sources"), "the kill came too late: already cut over"
        assert "vendor.>" in stream(lab, LEGACY)["config"]["subjects"]
        completes(playbook("phase1.yml"))
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
        completes(playbook("phase2.yml"))

        # Phase 3 reads the clock and the cut-over seq from the journal: it must pass, not blame a publisher.
        completes(playbook("phase3.yml", "-e", "migration_legacy_retention_seconds=0"))
        assert stream(lab, LEGACY) is None
    finally:
        stop.touch()
        lab.finish_load(load, timeout=120)
    report = lab.check_ledger(ledger, settle_s=30)
    assert report["lost"] == 0 and report["unexpected"] == 0, {k: v for k, v in report.items() if "_ids" not in k}
