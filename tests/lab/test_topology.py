"""Any topology by data alone: a second inventory - three groups, other stream names (X_VENDOR, X_CORE, X_SLEEP),
the HRV group no longer last and the last one a group nobody reads (sleep.*: no consumer, no front door, no row, no
metric) -
migrated on the lab under load with the ledger, through one playbook per group (playbooks/group.yml
-e migration_phase=N), validate and phase 3: nothing lost.

The inventory is the lab's (private ports included when a private lab is selected) plus one group_vars file that
replaces `migration` (written from the lab's own migration.yml, so every other key stays the rehearsed one)."""

from __future__ import annotations

import copy
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.lab.conftest import Lab, lab_processes
from lab.ansible_run import REPO, run_playbook_file

sys.path.insert(0, str(REPO))
from lab import labenv  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

LEGACY = "ATHLETE_ALLY_EVENTS"
SOAK_S = 2


def topology():
    """The lab's migration with three groups: vendor (phase 1), core (2), sleep (3, without readers)."""
    lab_migration = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "migration.yml").read_text())
    m = copy.deepcopy(lab_migration["migration"])
    vendor, core = copy.deepcopy(m["groups"][0]), copy.deepcopy(m["groups"][1])
    assert vendor["subjects"] == ["vendor.>"] and "athlete-ally.>" in core["subjects"]
    vendor.update(phase=1, name="vendor", stream="X_VENDOR")
    core.update(phase=2, name="core", stream="X_CORE", subjects=["athlete-ally.>"])
    sleep = {"phase": 3, "name": "sleep", "stream": "X_SLEEP", "subjects": ["sleep.*"], "max_age": "48h",
             "consumers": [],
             # nobody reads sleep.* yet: verified by publishing straight to NATS and finding it in X_SLEEP
             "verify": {"subject": "sleep.verify", "payload": {"kind": "sleep-verify"}}}
    m["groups"] = [vendor, core, sleep]
    candidates = m["service_contract"]["candidates_var"]
    # X_SLEEP holds no durable: listing it costs the service one "Failed to bind" line per durable
    m["modes"]["multi"][candidates] = "X_CORE,X_VENDOR,X_SLEEP,%s" % LEGACY
    m["soak_seconds"] = {0: SOAK_S, 1: SOAK_S, 2: SOAK_S, 3: SOAK_S}
    m["legacy"]["retention_seconds"] = 0
    return m


def write_inventory(root):
    """hosts.yml and group_vars of the selected lab inventory (links), plus the topology override."""
    base = Path(os.environ.get("ANSIBLE_INVENTORY") or REPO / "inventories" / "lab" / "hosts.yml").resolve().parent
    inv = root / "inventory"
    if inv.exists():
        shutil.rmtree(inv)
    (inv / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(base / "hosts.yml", inv / "hosts.yml")
    for source in sorted((base / "group_vars" / "all").glob("*.yml")):
        (inv / "group_vars" / "all" / source.name).symlink_to(source.resolve())
    # loaded last (alphabetical order): replaces the whole `migration` dict
    (inv / "group_vars" / "all" / "zzzz_topology.yml").write_text(
        "# tests/lab/test_topology.py: three groups, other stream names\n"
        + yaml.safe_dump({"migration": topology()}, sort_keys=False))
    return str(inv / "hosts.yml")


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    root = tmp_path_factory.mktemp("topology")
    hosts = write_inventory(root)
    # One lab directory for the playbooks, the endpoints and the teardown: the selected lab's (AA_LAB_DIR, a private
    # lab) or one of this module's own. Without it the playbooks would derive it from this inventory's directory
    # while labenv read the default lab's env, and the teardown would look for processes in the wrong place and
    # leave this lab running on the default ports for the next module.
    lab_dir = Path(os.environ.get("AA_LAB_DIR") or root / "lab")
    env = {"ANSIBLE_INVENTORY": hosts, "AA_LAB_INVENTORY": hosts, "AA_LAB_DIR": str(lab_dir)}
    down = run_playbook_file(REPO / "playbooks" / "lab_down.yml", ["-e", "lab_wipe=true"], env=env, timeout=180)
    assert down.rc == 0, down.stdout[-3000:]
    up = run_playbook_file(REPO / "playbooks" / "lab_up.yml", env=env, timeout=300)
    assert up.rc == 0, up.stdout[-5000:] + up.stderr[-2000:]
    lab = Lab(labenv.load(lab_dir / "env"), 0, up)
    try:
        yield lab, env
    finally:
        down = run_playbook_file(REPO / "playbooks" / "lab_down.yml", env=env, timeout=180)
        assert down.rc == 0 and not lab_processes(lab_dir), down.stdout[-3000:]


def play(env, name, *args):
    res = run_playbook_file(REPO / "playbooks" / name, list(args), env=env, timeout=600)
    failed = [t for t in res.tasks if t.get("failed")]
    assert res.rc == 0, "%s %s failed: %s\n%s" % (name, " ".join(args), failed[-1:] if failed else "",
                                                  res.stdout[-3000:] + res.stderr[-2000:])
    return res


def stream(lab, name):
    reply = lab.js("STREAM.INFO." + name)
    return None if "error" in reply else reply


def test_three_groups_other_names_one_without_readers_migrate_under_load_nothing_lost(topo, tmp_path):
    lab, env = topo
    load, ledger, stop = lab.start_load_until_stopped(tmp_path, "tp%s" % uuid.uuid4().hex[:4])
    try:
        deadline = time.monotonic() + 15
        while not (ledger.exists() and ledger.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.2)  # the phases start under load
        play(env, "preflight.yml")
        play(env, "phase0.yml")
        for phase in (1, 2, 3):  # one playbook for every group, by its phase
            play(env, "group.yml", "-e", "migration_phase=%d" % phase)
        sleep_meta = stream(lab, "X_SLEEP")["config"]
        assert sleep_meta["subjects"] == ["sleep.*"], sleep_meta
        assert sleep_meta["metadata"].get("aa.migration.phase3.verify_path") == "direct NATS publish (fallback)"
        core_meta = stream(lab, "X_CORE")["config"]["metadata"]
        assert int(core_meta["aa.migration.phase2.baseline_rows"]) > 0, core_meta  # recorded at its cut-over
        legacy = stream(lab, LEGACY)
        assert legacy["config"].get("subjects") in (None, [], [LEGACY]), legacy["config"]

        # "no regression" without a baseline is not passed: validate names how to proceed, in one line
        cfg = stream(lab, "X_CORE")["config"]
        cfg["metadata"] = {k: v for k, v in cfg["metadata"].items() if not k.startswith("aa.migration.phase2.baseline")}
        assert "error" not in lab.js("STREAM.UPDATE.X_CORE", cfg)
        refused = run_playbook_file(REPO / "playbooks" / "validate.yml", env=env, timeout=300)
        assert refused.rc != 0
        msg = [r for t in refused.tasks if t.get("failed") for r in t.get("results", [t]) if r.get("failed")][0]["msg"]
        assert "phase 2 (X_CORE)" in msg and "no baseline" in msg and "migration_rate_baseline" in msg, msg
        assert "\n" not in msg
        play(env, "validate.yml", "-e", '{"migration_rate_baseline": {"2": 1}}')  # the operator's figure

        validated = play(env, "validate.yml", "-e", '{"migration_rate_baseline": {"2": %s}}' % core_meta[
            "aa.migration.phase2.baseline_rows"])
        criteria = [t for t in validated.tasks if "Assert the success criteria of each group" in t["_name"]][0]
        lines = [r["msg"] for r in criteria["results"]]
        assert any(line.startswith("phase 2 (X_CORE): rows today") for line in lines), lines
        assert any(line.startswith("phase 3 (X_SLEEP): no row rate") for line in lines), lines
        error_rate = [t for t in validated.tasks if "Assert the error rate" in t["_name"]][0]["msg"]
        assert "(Prometheus, over" in error_rate, error_rate  # the runbook's windowed rate, not lifetime counters

        play(env, "phase3.yml")
        assert stream(lab, LEGACY) is None
    finally:
        stop.touch()
        lab.finish_load(load, timeout=120)
    report = lab.check_ledger(ledger, settle_s=30)
    assert report["acked"] > 0
    assert report["lost"] == 0 and report["unexpected"] == 0, {k: v for k, v in report.items() if "_ids" not in k}
