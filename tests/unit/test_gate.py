"""The go/no-go decisions (module_utils/gate.py, lease.py): pure functions, every branch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import gate, lease  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError  # noqa: E402

DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.mark.parametrize("record, digest, ok, words", [
    (None, "abc", False, "no preflight has passed"),
    ({"digest": "old", "passed_at": NOW - 60}, "abc", False, "the plan changed"),
    ({"digest": "abc", "passed_at": NOW - DAY - 1}, "abc", False, "more than migration.preflight_valid_for"),
    ({"digest": "abc", "passed_at": NOW - DAY + 1}, "abc", True, "passed"),
    ({"digest": "abc", "passed_at": NOW - 5}, "abc", True, "5s ago"),
])
def test_preflight_decision(record, digest, ok, words):
    allowed, reason = gate.decide(record, digest, NOW, DAY)
    assert allowed is ok
    assert words in reason


@pytest.mark.parametrize("state, require, digest, refused", [
    ("enter", True, None, True),
    ("enter", True, "", True),
    ("enter", True, "abc", False),
    ("enter", False, None, False),
    ("release", True, None, False),
])
def test_entering_with_the_preflight_required_needs_the_digest(state, require, digest, refused):
    params = dict(state=state, require_preflight=require, digest=digest)
    if refused:
        with pytest.raises(JetStreamError, match=r"^migration_gate: digest is required to check the preflight "
                                                 r"\(state=enter\)$"):
            gate.check_params(params)
    else:
        assert gate.check_params(params) is None


ME = {"run_id": "h/b/100/7", "host": "h", "boot_id": "b", "pid": 100, "pid_start": 7, "user": "op",
      "what": "playbooks/phase1.yml", "label": ""}


def held(**kw):
    base = {"run_id": "other", "host": "elsewhere", "boot_id": "x", "pid": 5, "pid_start": 1, "user": "op2",
            "what": "playbooks/phase2.yml", "label": "AWX job 42", "since": NOW - 100, "heartbeat": NOW - 3}
    base.update(kw)
    return base


def never_gone(_lease, _me):
    return False


def always_gone(_lease, _me):
    return True


def test_free_lease_is_acquired():
    assert lease.decide(None, ME, NOW, 30, never_gone)[0] == "acquire"


def test_own_lease_is_renewed():
    assert lease.decide(dict(ME, since=NOW, heartbeat=NOW), ME, NOW, 30, always_gone)[0] == "renew"


def test_live_lease_elsewhere_refuses_naming_holder_and_since():
    verdict, reason = lease.decide(held(), ME, NOW, 30, never_gone)
    assert verdict == "refuse"
    assert "playbooks/phase2.yml by op2@elsewhere pid 5 (AWX job 42)" in reason
    assert lease.iso(NOW - 100) in reason and "\n" not in reason


def test_lease_of_a_dead_local_process_is_taken_over_at_once():
    verdict, reason = lease.decide(held(heartbeat=NOW), ME, NOW, 30, always_gone)
    assert verdict == "take_over" and "process is gone" in reason


def test_lease_from_elsewhere_lapses_after_its_heartbeat_stops():
    assert lease.decide(held(heartbeat=NOW - 29), ME, NOW, 30, never_gone)[0] == "refuse"
    verdict, reason = lease.decide(held(heartbeat=NOW - 31), ME, NOW, 30, never_gone)
    assert verdict == "take_over" and "heartbeat stopped 31s ago" in reason


def test_holder_gone_only_for_this_controller():
    me = lease.this_run()
    alive = dict(held(), host=me["host"], boot_id=me["boot_id"], pid=os.getpid(),
                 pid_start=lease._proc_stat(os.getpid())[1])
    assert not lease.holder_gone(alive, me)
    assert lease.holder_gone(dict(alive, pid_start=alive["pid_start"] + 1), me)  # the pid was recycled
    assert not lease.holder_gone(dict(alive, host="other-host", pid_start=-5), me)  # elsewhere: heartbeat decides


def test_this_run_names_the_playbook_process_or_the_parent():
    me = lease.this_run("AWX job 9")
    assert me["pid"] > 0 and me["label"] == "AWX job 9"
    assert me["run_id"].startswith(me["host"] + "/")
