"""Go/no-go on the lab (roles/migration/tasks/gate.yml, module_utils/gate.py, lease.py), through ansible-playbook:

- a phase refuses in one line without a passed preflight, and writes nothing; a --check rehearsal runs and says the
  real run would be refused;
- -e migration_skip_preflight=true proceeds, warns, and the skip is in the journal (control bucket);
- after a passed preflight a phase runs; a different plan (-e changing it) is refused;
- a second writing run started while one runs refuses naming the first and since when; after a kill -9 of the first,
  a re-run on this controller takes the lease over at once and finishes; at its end the lease is released;
- a lease held from another controller refuses while its heartbeat is fresh and is taken over once it is stale.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

import pytest

from lab.ansible_run import REPO, playbook_env
from tests.support.jsapi import api

sys.path.insert(0, str(REPO))
from lab.interrupt import run_killed  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BUCKET = "aa_migration_control"  # inventories/lab/group_vars/all/migration.yml: migration.control_bucket
# No load runs here: the soaks' alerts (no message stored, low rate) would fire on an idle lab; this module is about
# the gate, which comes before them. Neither value is part of the plan's digest.
QUICK = ["-e", "migration_soak_seconds=0", "-e", "migration_prometheus_url="]


def playbook(name, *args):
    return [str(REPO / ".venv" / "bin" / "ansible-playbook"), str(REPO / "playbooks" / name)] + QUICK + list(args)


def run(name, *args):
    out = run_killed(playbook(name, *args), playbook_env(), str(REPO), timeout=600)
    return out["rc"], out["output"]


def js(lab, subject, body=None):
    return api(lab.env["NATS_URL"], subject, body, user=lab.env["NATS_USER"], password=lab.env["NATS_PASSWORD"])


def record(lab, key):
    reply = js(lab, "STREAM.MSG.GET.KV_%s" % BUCKET, {"last_by_subj": "$KV.%s.%s" % (BUCKET, key)})
    if "error" in reply:
        return None
    msg = reply["message"]
    if "KV-Operation: DEL" in base64.b64decode(msg.get("hdrs") or b"").decode():
        return None
    return json.loads(base64.b64decode(msg["data"]))


def put_record(lab, key, value):
    import asyncio

    import nats

    async def go():
        nc = await nats.connect(lab.env["NATS_URL"].split(","), user=lab.env["NATS_USER"],
                                password=lab.env["NATS_PASSWORD"])
        try:
            ack = await nc.request("$KV.%s.%s" % (BUCKET, key), json.dumps(value).encode(), timeout=5)
            assert b"error" not in ack.data, ack.data
        finally:
            await nc.close()
    asyncio.run(go())


def refusal(output):
    lines = [line for line in output.splitlines() if "refused:" in line and "msg" not in line]
    assert lines, output[-3000:]
    return lines[0]


def test_phase_refuses_without_a_passed_preflight_and_writes_nothing(lab):
    rc, out = run("phase0.yml")
    assert rc != 0
    line = refusal(out)
    assert "no preflight has passed for this migration" in line and "playbooks/preflight.yml" in line
    assert "migration_skip_preflight=true" in line
    assert js(lab, "STREAM.INFO.AA_DLQ")["error"]["err_code"] == 10059  # nothing of phase 0 was written
    assert js(lab, "STREAM.INFO.KV_%s" % BUCKET)["error"]["err_code"] == 10059  # nor any lease


def test_check_rehearsal_runs_and_says_the_real_run_would_be_refused(lab):
    rc, out = run("phase0.yml", "--check")
    assert rc == 0, out[-3000:]
    assert "the real run would be refused" in out
    assert js(lab, "STREAM.INFO.AA_DLQ")["error"]["err_code"] == 10059


def test_preflight_refuses_missing_prerequisites_in_one_line_and_records_nothing(lab):
    backup = lab.dir / "backup-snapshot"  # migration.backup of the lab inventory: {type: file, max_age: 6h}
    now = time.time()
    os.utime(backup, (now - 7 * 3600, now - 7 * 3600))
    try:
        rc, out = run("preflight.yml")
    finally:
        os.utime(backup, (now, now))
    assert rc != 0
    line = next(x for x in out.splitlines() if "take a backup before migrating" in x)
    assert "is 7.0 h old, migration.backup.max_age is 6h" in line, line
    rc, out = run("preflight.yml", "-e", "nats_system_user=")
    assert rc != 0 and "nats_system_user is not set" in out
    assert record(lab, "preflight") is None


def test_skip_flag_proceeds_loudly_and_is_journaled(lab):
    rc, out = run("phase0.yml", "-e", "migration_skip_preflight=true")
    assert rc == 0, out[-3000:]
    assert "PROCEEDING WITHOUT A PASSED PREFLIGHT" in out
    skipped = record(lab, "preflight_skipped")
    assert skipped and len(skipped["digest"]) == 64 and "phase0.yml" in skipped["what"], skipped
    assert "no preflight has passed" in skipped["reason"]
    assert record(lab, "lease") is None  # released at the end of the run


def test_preflight_allows_the_same_plan_only(lab):
    rc, out = run("preflight.yml")
    assert rc == 0, out[-3000:]
    passed = record(lab, "preflight")
    assert passed and abs(passed["passed_at"] - time.time()) < 300
    rc, out = run("phase1.yml", "-e", "migration_phase2_strategy=blue_green")  # another plan than the preflight's
    assert rc != 0 and "the plan changed since the last passed preflight" in refusal(out)
    rc, out = run("phase0.yml")  # the same plan: allowed; phase 0 is already done, so nothing changes
    assert rc == 0, out[-3000:]


def test_one_run_at_a_time_and_kill9_does_not_block_the_rerun(lab):
    second = {}

    def start_second():
        second["rc"], second["out"] = run("phase0.yml")

    first = run_killed(playbook("phase1.yml"), playbook_env(), str(REPO), timeout=600,
                       task="Create the new stream as a shadow", action=start_second)
    # the action runs in a thread; the first run went on to its end meanwhile (or failed: then say why)
    deadline = time.monotonic() + 120
    while "rc" not in second and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first["rc"] == 0, first["output"][-3000:]
    assert second.get("rc", 0) != 0, second
    line = refusal(second["out"])
    assert "another run holds the migration lease: " in line and "phase1.yml" in line and "since 20" in line

    killed = run_killed(playbook("phase2.yml"), playbook_env(), str(REPO), timeout=600,
                        task="Create the new stream as a shadow")
    assert killed["killed"], killed["output"][-3000:]
    held = record(lab, "lease")
    assert held and "phase2.yml" in held["what"]  # the killed run's lease is still there ...
    t0 = time.monotonic()
    rc, out = run("phase2.yml")  # ... and the re-run is not blocked by it
    assert rc == 0, out[-3000:]
    assert "took over the migration lease" in out and "its process is gone" in out
    assert time.monotonic() - t0 < 600
    assert record(lab, "lease") is None


def test_a_lease_from_another_controller_refuses_while_fresh_and_lapses(lab):
    other = {"run_id": "ctl-2/boot/77/1", "host": "ctl-2", "boot_id": "boot", "pid": 77, "pid_start": 1,
             "user": "awx", "what": "playbooks/phase2.yml", "label": "AWX job 1234", "since": time.time() - 60,
             "heartbeat": time.time()}
    put_record(lab, "lease", other)
    rc, out = run("phase2.yml", "--tags", "rollback")  # rollbacks are not gated by preflight, but take the lease
    assert rc != 0
    line = refusal(out)
    assert "playbooks/phase2.yml by awx@ctl-2 pid 77 (AWX job 1234)" in line and "heartbeat" in line
    put_record(lab, "lease", dict(other, heartbeat=time.time() - 31))
    rc, out = run("status.yml")  # read-only: never takes the lease
    assert rc == 0, out[-3000:]
    assert record(lab, "lease")["host"] == "ctl-2"
    rc, out = run("phase1.yml")  # complete already: takes the stale lease over and gives it back
    assert rc == 0, out[-3000:]
    assert "heartbeat stopped" in out
    assert record(lab, "lease") is None
