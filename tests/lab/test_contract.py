"""The service contract (docs/SERVICE_CONTRACT.md) probed on the lab through playbooks/contract_check.yml:

- a healthy lab meets it (tables, one probe per group, metrics), and probing again adds no row;
- ingest's answer without `seq` (the lab-only LAB_REPLY_OMIT hook) is refused in one line naming the missing field
  and the inventory key, before anything of the migration is written (no new stream, the service's mode unchanged);
  with --check nothing is probed and nothing changes;
- the contract restored, the check passes again.
"""

from __future__ import annotations

import pytest

from lab.ansible_run import REPO, run_playbook_file

pytestmark = [pytest.mark.timeout(600)]

PROBE_PREFIX = "migration-verify-contract-probe-p"
ASSERT = "athlete_ally.nats.migration : Assert the services meet the contract"


def contract_check(*args):
    return run_playbook_file(REPO / "playbooks" / "contract_check.yml", list(args), timeout=300)


def streams(lab):
    return sorted(lab.js("STREAM.NAMES").get("streams") or [])


def probe_rows(lab):
    return lab.sql("SELECT (SELECT count(*) FROM hrv_data WHERE event_id LIKE %s) + "
                   "(SELECT count(*) FROM vendor_events WHERE event_id LIKE %s)", (PROBE_PREFIX + "%",) * 2)[0][0]


def failed_task(res):
    return next(t for t in res.tasks if t.get("failed"))


def test_a_healthy_lab_meets_the_contract_and_probing_again_adds_nothing(lab):
    first = contract_check()
    assert first.rc == 0, first.stdout[-4000:]
    assert first.changed == 0
    met = first.task(ASSERT)["msg"]
    assert "service contract met" in met and PROBE_PREFIX + "1" in met and PROBE_PREFIX + "2" in met, met
    assert probe_rows(lab) == 2  # one row per group with a front door and a row
    again = contract_check()
    assert again.rc == 0, again.stdout[-4000:]
    assert probe_rows(lab) == 2


def test_a_reply_without_seq_is_refused_in_one_line_before_anything_is_written(lab):
    before = streams(lab)
    broken = lab.driver([("set_env", {"driver_service": "ingest-service", "driver_env": {"LAB_REPLY_OMIT": "seq"}})])
    assert broken.rc == 0, broken.stdout[-3000:]
    try:
        res = contract_check()
        assert res.rc != 0, res.stdout[-3000:]
        failed = failed_task(res)
        msg = failed["msg"]
        assert failed["_name"] == ASSERT, failed["_name"]
        assert "\n" not in msg, msg
        assert "lacks 'seq' (migration.service_contract.reply.seq_field)" in msg, msg
        assert "migration.groups[0].verify.path" in msg and "migration.groups[1].verify.path" in msg, msg
        assert streams(lab) == before, "the contract check must write nothing of the migration"
        status = lab.driver([("status", {"driver_service": "normalize-service"})])
        assert status.task("out 0")["msg"]["status"]["env"]["EVENT_STREAM_MODE"] == "single", status.stdout[-2000:]

        rehearsal = contract_check("--check")  # reads only: no probe, so the reply is not seen
        assert rehearsal.rc == 0 and rehearsal.changed == 0, rehearsal.stdout[-3000:]
        assert "no probe event sent" in rehearsal.task(ASSERT)["msg"]
    finally:
        restored = lab.driver([("set_env", {"driver_service": "ingest-service", "driver_env": {"LAB_REPLY_OMIT": None}})])
        assert restored.rc == 0, restored.stdout[-3000:]
    again = contract_check()
    assert again.rc == 0, again.stdout[-3000:]
