"""Phase 2 option B (blue/green) under load on the lab, then its rollback, then the migration finished with option B
and playbooks/post_migration.yml after phase 3 (--check first). One lab for the module; each test runs its own load
and checks its own ledger (0 lost, 0 unexpected).

- test_blue_green_phase2_and_rollback: phases 0-2 with option B (green scaled up and bound to AA_CORE_HOT, blue
  scaled to 0 after the cut-over, blue's clock in the journal, the verification event posted through the ingest API
  with its hrv_data row and green's per-stream metric), then `phase2.yml --tags rollback` (blue back on the legacy
  stream, green stopped, AA_CORE_HOT removed).
- test_post_migration_after_blue_green: phase 2 option B again, phase 3, post_migration --check (changes nothing;
  blue kept, its 24 h not over), post_migration with the clock run out (green's final candidates without the legacy
  stream, blue removed, verification rows removed, summary in the journal), run again (changed=0).
The soak windows are one look each here (-e migration_soak_seconds=0); make rehearse runs them in full.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
import uuid

import pytest

from lab.ansible_run import BIN, REPO, run_playbook_file
from lab.services.common import read_env_file
from tests.support.jsapi import api

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LEGACY, CORE = "ATHLETE_ALLY_EVENTS", "AA_CORE_HOT"
BLUE, GREEN = "normalize-service", "normalize-service-green"
# The soak watches JetStream consumer lag (the group's new consumers), not the Prometheus rules: this module is
# about blue/green, and the rules' NatsConsumerLag also fires on the drained legacy consumers the shadow leaves behind.
OPTION_B = ["-e", "migration_phase2_strategy=blue_green", "-e", "migration_soak_seconds=0", "-e", "migration_prometheus_url="]


def play(name, *args):
    t0 = time.monotonic()
    res = run_playbook_file(REPO / "playbooks" / name, list(OPTION_B) + list(args), timeout=600)
    res.seconds = time.monotonic() - t0
    failed = [t for t in res.tasks if t.get("failed")]
    assert res.rc == 0, "%s %s failed (rc %s): %s\n%s" % (name, " ".join(args), res.rc,
                                                          [(t["_name"], t.get("msg")) for t in failed],
                                                          res.stdout[-3000:] + res.stderr[-2000:])
    print("%-40s %5.1f s" % (" ".join([name] + list(args)), res.seconds))
    return res


def stream(lab, name):
    reply = api(lab.env["NATS_URL"], "STREAM.INFO." + name, user=lab.env["NATS_USER"], password=lab.env["NATS_PASSWORD"])
    return None if "error" in reply else reply


def journal(lab, name, phase=2):
    head = "aa.migration.phase%d." % phase
    meta = (stream(lab, name) or {}).get("config", {}).get("metadata") or {}
    return {k[len(head):]: v for k, v in meta.items() if k.startswith(head)}


def program(lab, name):
    """supervisord's state of a lab program (RUNNING, STOPPED, ...), or None when supervisord does not know it."""
    out = subprocess.run([str(BIN / "supervisorctl"), "-c", lab.env["LAB_SUPERVISOR_CONF"], "status", name],
                         capture_output=True, text=True, check=False).stdout
    words = out.split()
    return words[1] if len(words) > 1 and words[0] == name else None


def env_file(lab, name):
    return read_env_file(str(lab.dir / "env.d" / ("%s.env" % name)))  # as the service reads it at its next start


def start_load(lab, tmp_path):
    return lab.start_load_until_stopped(tmp_path, "bg%s" % uuid.uuid4().hex[:4])


def finish(lab, load, ledger, stop):
    stop.touch()
    lab.finish_load(load, timeout=120)
    report = lab.check_ledger(ledger, settle_s=30)
    summary = {k: v for k, v in report.items() if "_ids" not in k}
    print("ledger", summary)
    assert report["lost"] == 0 and report["unexpected"] == 0, summary


def test_blue_green_phase2_and_rollback(lab, tmp_path):
    load, ledger, stop = start_load(lab, tmp_path)
    try:
        play("preflight.yml")  # option B is part of the plan: the go/no-go gate wants a preflight of it
        play("phase0.yml")
        play("phase1.yml")
        assert program(lab, GREEN) == "STOPPED" and program(lab, BLUE) == "RUNNING"

        p2 = play("phase2.yml")
        assert program(lab, GREEN) == "RUNNING", "option B scales green up"
        assert program(lab, BLUE) == "STOPPED", "Step 2.10 scales blue to 0 after the cut-over"
        core = journal(lab, CORE)
        assert int(core["blue_scaled_down_at"]) > 0 and core["completed_at"], core
        assert core["verify_path"] == "ingest API /api/v1/ingest/hrv", core
        rows = lab.sql("SELECT rmssd, ln_rmssd FROM hrv_data WHERE event_id = %s", (core["verify_event_id"],))
        assert len(rows) == 1 and rows[0][0] == 48.3 and abs(rows[0][1] - 3.877) < 1e-3, rows
        assert any("Assert the new consumer processed it" in t["_name"] and not t.get("skipped") for t in p2.tasks)
        with urllib.request.urlopen(lab.env["METRICS_GREEN_URL"], timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'normalize_hrv_messages_total{result="success",stream="AA_CORE_HOT"}' in metrics

        play("phase2.yml", "--tags", "rollback")
        assert stream(lab, CORE) is None
        assert "athlete-ally.>" in stream(lab, LEGACY)["config"]["subjects"]
        assert program(lab, BLUE) == "RUNNING" and program(lab, GREEN) == "STOPPED", "blue takes over again"
    finally:
        finish(lab, load, ledger, stop)


def test_post_migration_after_blue_green(lab, tmp_path):
    load, ledger, stop = start_load(lab, tmp_path)
    try:
        play("phase2.yml")
        play("phase3.yml", "-e", "migration_legacy_retention_seconds=0")
        assert stream(lab, LEGACY) is None
        before = env_file(lab, GREEN)
        assert lab.sql("SELECT count(*) FROM hrv_data WHERE event_id LIKE 'migration-verify-%%'")[0][0] > 0

        # --check with blue's 24 h not over: nothing changes, and the summary says blue stays until when
        check = play("post_migration.yml", "--check")
        assert env_file(lab, GREEN) == before, "--check changed green's environment"
        assert program(lab, BLUE) == "STOPPED", "--check removed blue"
        assert lab.sql("SELECT count(*) FROM hrv_data WHERE event_id LIKE 'migration-verify-%%'")[0][0] > 0
        assert "post_summary" not in journal(lab, CORE)
        summary = [t.get("msg", "") for t in check.tasks if t["_name"].endswith(": Summary")]
        assert summary and "blue kept (scaled to 0) until" in summary[0], summary

        done = play("post_migration.yml", "-e", "migration_blue_keep_seconds=0")
        assert program(lab, BLUE) is None, "blue removed once its clock ran out"
        assert env_file(lab, GREEN)["AA_STREAM_CANDIDATES"] == "AA_CORE_HOT,AA_VENDOR_HOT"
        assert lab.sql("SELECT count(*) FROM hrv_data WHERE event_id LIKE 'migration-verify-%%'")[0][0] == 0
        assert lab.sql("SELECT count(*) FROM vendor_events WHERE event_id LIKE 'migration-verify-%%'")[0][0] == 0
        summary = journal(lab, CORE)["post_summary"]
        assert "blue removed" in summary and "verification rows removed" in summary, summary
        assert done.changed > 0

        again = play("post_migration.yml", "-e", "migration_blue_keep_seconds=0")
        assert again.changed == 0, [t["_name"] for t in again.tasks if t.get("changed")]
    finally:
        finish(lab, load, ledger, stop)
