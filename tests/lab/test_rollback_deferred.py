"""A rollback always ends: with the service crash-looping (a bad release), `phase1.yml --tags rollback` under load puts
the traffic back on the legacy stream, cannot get the new stream's backlog processed, and ends successfully saying
what is left (deferred: nothing deleted, the journal records it). Once the service is fixed, the same rollback run
again finishes it (backlog processed, new stream removed, legacy consumers recovered); the ledger shows nothing lost.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import pytest

from lab.ansible_run import REPO
from tests.support.jsapi import api
from tests.support.rollback_play import ok, play

sys.path.insert(0, str(REPO))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LEGACY, VENDOR = "ATHLETE_ALLY_EVENTS", "AA_VENDOR_HOT"


def stream(lab, name):
    reply = api(lab.env["NATS_URL"], "STREAM.INFO." + name, user=lab.env["NATS_USER"], password=lab.env["NATS_PASSWORD"])
    return None if "error" in reply else reply


def behind(lab, stream_name, consumer):
    info = api(lab.env["NATS_URL"], "CONSUMER.INFO.%s.%s" % (stream_name, consumer), user=lab.env["NATS_USER"],
               password=lab.env["NATS_PASSWORD"])
    return info.get("num_pending", 0) + info.get("num_ack_pending", 0)


def test_rollback_with_a_crash_looping_service_defers_and_a_rerun_finishes(lab, tmp_path):
    load, ledger, stop = lab.start_load_until_stopped(tmp_path, "rd%s" % uuid.uuid4().hex[:4])
    try:
        for name in ("preflight.yml", "phase0.yml", "phase1.yml"):
            ok(play(name))
        # A bad release: the service exits at start (lab-only toggle); its restart fails, it is not running.
        lab.driver([("set_env", {"driver_service": "normalize-service", "driver_env": {"LAB_CRASH_ON_START": "1"}})])
        deadline = time.monotonic() + 60
        while behind(lab, VENDOR, "normalize-oura") == 0 and time.monotonic() < deadline:
            time.sleep(0.5)  # vendor events pile up on the new stream: nobody processes them
        assert behind(lab, VENDOR, "normalize-oura") > 0

        deferred = ok(play("phase1.yml", "--tags", "rollback"))
        print("deferred rollback, service crash-looping: %.1f s" % deferred.seconds)
        said = [t.get("msg") for t in deferred.tasks
                if "Say what remains" in t["_name"] and t.get("msg")]
        assert said and "rollback of phase 1 deferred" in said[0] and "run the rollback again" in said[0], said
        legacy = stream(lab, LEGACY)["config"]["subjects"]
        assert "vendor.>" in legacy, "the traffic is back on the legacy stream"
        vendor = stream(lab, VENDOR)
        assert vendor is not None, "nothing is deleted while its consumers hold unprocessed messages"
        meta = vendor["config"]["metadata"]
        left = json.loads(meta["aa.migration.phase1.rollback_left"])
        assert left["normalize-oura"]["pending"] + left["normalize-oura"]["ack_pending"] > 0
        assert int(meta["aa.migration.phase1.rollback_deferred_at"]) > 0

        # The release is fixed: the service starts again (in multi mode, reading both streams).
        fixed = lab.driver([("set_env", {"driver_service": "normalize-service",
                                         "driver_env": {"LAB_CRASH_ON_START": None}})])
        assert fixed.rc == 0, fixed.stdout[-3000:]
        done = ok(play("phase1.yml", "--tags", "rollback"))
        assert stream(lab, VENDOR) is None, "the re-run processed what was left and removed the new stream"
        assert [t for t in done.tasks if "Recovery - the legacy consumers" in t["_name"] and not t.get("skipped")]
        again = ok(play("phase1.yml", "--tags", "rollback"))
        assert again.changed == 0
    finally:
        stop.touch()
        report = lab.finish_load(load, timeout=120)
    print("load", report)
    result = lab.check_ledger(ledger, settle_s=30)
    summary = {k: v for k, v in result.items() if "_ids" not in k}
    print("ledger", summary)
    assert result["lost"] == 0 and result["unexpected"] == 0, summary
