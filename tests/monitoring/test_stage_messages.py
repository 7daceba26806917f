"""Phase 3 and post-migration messages (roles/migration/templates/status_update.j2 through notify.yml, as
legacy.yml and post_migration.yml include it): rendered by ansible-playbook with the lab inventory and POSTed to a
local webhook. Phase 3 speaks of the legacy stream and reads the last group's journal; post-migration has its own
title; "Next" says what follows; a phase's own messages are unchanged; a fact of an earlier, completed phase in the
same run (playbooks/migrate.yml) does not silence them. In the lab: phase3.yml and post_migration.yml each send
start and complete once, and say nothing when run again."""

from __future__ import annotations

import time
import uuid

import pytest
import yaml

from tests.monitoring.webhook import Receiver
from lab.ansible_run import REPO, run_playbook_file, run_tasks

LAB = ["-i", str(REPO / "inventories" / "lab")]
MIGRATION = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "migration.yml").read_text())
LEGACY = MIGRATION["migration"]["legacy"]["stream"]
LAST = max(int(g["phase"]) for g in MIGRATION["migration"]["groups"])
TOTAL = len(MIGRATION["migration"]["groups"]) + 1


def notify(event, stage=None, **extra):
    params = {"migration_notify_event": event, "migration_notify_url": "{{ hook_url }}",
              "migration_prometheus_url": ""}
    if stage:
        params["migration_notify_stage"] = stage
    params.update(extra)
    return {"name": "notify %s %s" % (stage, event), "vars": params,
            "ansible.builtin.include_role": {"name": "athlete_ally.nats.migration", "tasks_from": "notify"}}


def send(tasks):
    # the journal as migration_state reports it: the last group's cut-over 2 hours ago
    state = {"migration": {"groups": {str(LAST): {"journal": {"cutover_at": int(time.time()) - 7200}}}}}
    facts = {"name": "journal and an earlier phase completed in this run", "ansible.builtin.set_fact": {
        "migration_state_read": state, "migration_post_state": state, "migration_started_at": "complete"}}
    with Receiver() as hook:
        res = run_tasks([facts] + tasks, args=LAB + ["-e", "hook_url=" + hook.url])
        assert res.rc == 0, res.stdout[-3000:] + res.stderr[-2000:]
        return hook.texts()


def lines(text):
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_phase3_messages_name_the_legacy_stream_and_what_comes_next():
    start, complete = send([notify("start", "legacy"), notify("complete", "legacy")])
    assert lines(start)[:3] == [
        "[UPDATE] Migration Phase %d/%d - 🔄 In Progress" % (TOTAL, TOTAL),
        "Phase %d: Delete the legacy stream %s (20 s after the last cut-over)" % (TOTAL, LEGACY),
        "Status: 🔄 In Progress"], start
    assert lines(complete)[0] == "[UPDATE] Migration Phase %d/%d - ✅ Complete" % (TOTAL, TOTAL)
    assert "Next: post-migration (playbooks/post_migration.yml)" in lines(complete), complete
    assert "Journal: cutover_at=" in complete, "the last group's journal"


def test_post_migration_messages_have_their_own_title_and_end_the_migration():
    start, complete = send([notify("start", "post"), notify("complete", "post")])
    assert lines(start)[0] == "[UPDATE] Post-Migration - 🔄 In Progress", start
    assert lines(start)[1].startswith("Post-migration: Final service mode, verification rows, validation; %s deleted"
                                      % LEGACY)
    assert lines(complete)[0] == "[UPDATE] Post-Migration - ✅ Complete"
    assert "Next: nothing: the migration is done" in lines(complete), complete
    # the duration runs from the start message of this run, not from the cut-over 2 hours ago
    assert float(next(x for x in lines(complete) if x.startswith("Duration:")).split()[1]) < 60


def test_a_phase_message_is_unchanged_and_still_silenced_on_a_rerun_of_a_completed_phase():
    texts = send([notify("complete", migration_phase=1), notify("issue", migration_phase=1)])
    assert len(texts) == 1, texts  # the completed phase's "complete" is not said again; its issue is
    assert lines(texts[0])[:2] == ["[UPDATE] Migration Phase 1/%d - ⚠️ Issue Detected" % TOTAL,
                                   "Phase 1: Migrate the vendor subjects (vendor.>) to AA_VENDOR_HOT"], texts


QUICK = ["-e", "migration_soak_seconds=0", "-e", "migration_prometheus_url="]  # this test is about the messages


def playbook(name, *args):
    res = run_playbook_file(REPO / "playbooks" / name, QUICK + list(args), timeout=600)
    assert res.rc == 0, "%s: %s" % (name, res.stdout[-3000:] + res.stderr[-2000:])
    return res


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_phase3_and_post_migration_send_start_and_complete_once_in_the_lab(lab, tmp_path):
    load, ledger, stop = lab.start_load_until_stopped(tmp_path, "sm%s" % uuid.uuid4().hex[:4])
    try:
        for name in ("preflight.yml", "phase0.yml", "phase1.yml", "phase2.yml"):
            playbook(name)
        with Receiver() as hook:
            url = ["-e", "migration_notify_url=" + hook.url]
            outputs = [playbook("phase3.yml", "-e", "migration_legacy_retention_seconds=0", *url)]
            phase3 = hook.texts()
            outputs.append(playbook("phase3.yml", "-e", "migration_legacy_retention_seconds=0", *url))
            outputs.append(playbook("post_migration.yml", *url))
            post = hook.texts()[len(phase3):]
            outputs.append(playbook("post_migration.yml", *url))
            total = len(hook.texts())
    finally:
        stop.touch()
        lab.finish_load(load, timeout=120)
    assert [t.splitlines()[0] for t in phase3] == [
        "[UPDATE] Migration Phase %d/%d - 🔄 In Progress" % (TOTAL, TOTAL),
        "[UPDATE] Migration Phase %d/%d - ✅ Complete" % (TOTAL, TOTAL)], phase3
    assert [t.splitlines()[0] for t in post] == ["[UPDATE] Post-Migration - 🔄 In Progress",
                                                 "[UPDATE] Post-Migration - ✅ Complete"], post
    assert total == 4, "the re-runs said nothing"
    assert not [o for o in outputs if "s3cr3t-token" in o.stdout + o.stderr], "the webhook URL is a secret"
    report = lab.check_ledger(ledger, settle_s=30)
    assert report["lost"] == 0 and report["unexpected"] == 0, {k: v for k, v in report.items() if "_ids" not in k}
