"""Each phase rides through a leader election: while it runs, the leader of the stream it works on is SIGKILLed
and its node comes back 8 s later. The phase completes in one run (no re-run), validation passes, nothing is lost.
"""

from __future__ import annotations

import time

import pytest

from tests.lab.test_resume import REPO, playbook, start_load
from tests.support.ansible_run import playbook_env

from lab.interrupt import run_killed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

NODE_DOWN_S = 8
# phase -> (task whose start triggers the fault, stream whose leader is killed then)
FAULTS = [
    ("phase0.yml", "Publish a test message", "AA_DLQ"),
    ("phase1.yml", "Drain the legacy consumers up to the shadow's start", "ATHLETE_ALLY_EVENTS"),
    ("phase2.yml", "Move the subjects", "AA_CORE_HOT"),
]


def test_each_phase_completes_through_a_stream_leader_kill(lab, tmp_path):
    load, ledger, stop = start_load(lab, tmp_path)
    done = []
    try:
        for name, task, stream in FAULTS:
            def leader_down_and_back(stream=stream):
                out = lab.fault("kill-leader", stream)
                time.sleep(NODE_DOWN_S)
                lab.fault("restart-nats", out["leader"])
                done.append((stream, out["leader"]))

            run = run_killed(playbook(name), playbook_env(), str(REPO), task=task, action=leader_down_and_back,
                             timeout=600)
            assert run["at"], "%s ended before '%s' started" % (name, task)
            assert run["rc"] == 0, "%s did not ride through the %s leader kill:\n%s" % (
                name, stream, run["output"][-5000:])
            assert done and done[-1][0] == stream, "the leader of %s was not killed and brought back: %s" % (
                stream, done)
        validate = run_killed(playbook("validate.yml"), playbook_env(), str(REPO), timeout=600)
        assert validate["rc"] == 0, validate["output"][-5000:]
    finally:
        stop.touch()
        lab.finish_load(load, timeout=120)
    report = lab.check_ledger(ledger, settle_s=30)
    assert report["lost"] == 0 and report["unexpected"] == 0, {k: v for k, v in report.items() if "_ids" not in k}
