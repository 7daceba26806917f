"""`make lab-up` on a lab that is mid- or post-migration: missing processes come back, JetStream is left alone."""

from __future__ import annotations

import json
import time

import pytest

from tests.lab.conftest import LAB_VARS
from tests.lab.test_lab import http
from tests.support.polling import wait_for
from lab.ansible_run import REPO, run_playbook_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

LEFT_ALONE = "left every stream and consumer alone"


def topology(lab):
    """{stream: (config JSON, {durable: config JSON})}: every stream and consumer config, serialized as is."""
    out = {}
    for name in lab.js("STREAM.NAMES")["streams"] or []:
        config = lab.js("STREAM.INFO." + name)["config"]
        consumers = {}
        for durable in lab.js("CONSUMER.NAMES." + name)["consumers"] or []:
            consumers[durable] = json.dumps(lab.js("CONSUMER.INFO.%s.%s" % (name, durable))["config"],
                                            sort_keys=True)
        out[name] = (json.dumps(config, sort_keys=True), consumers)
    return out


def program_state(lab, program):
    return lab.fault("status")["status"].get(program, "").split()[0]


def lab_up_restores(lab, killed):
    """Kill ``killed``, run lab_up.yml, check it is back, JetStream untouched, and the one line was printed."""
    before = topology(lab)
    assert lab.fault("kill-normalize", killed)["after"] != "RUNNING"
    t0 = time.monotonic()
    up = run_playbook_file(REPO / "playbooks" / "lab_up.yml", timeout=300)
    print("lab up on a %s lab: %.1f s, changed=%s" % (sorted(before), time.monotonic() - t0, up.changed))
    assert up.rc == 0, up.stdout[-5000:] + up.stderr[-2000:]
    assert program_state(lab, killed) == "RUNNING"
    status, body = http("GET", lab.env["NORMALIZE_URL"] + "/health")
    assert status == 200, body
    after = topology(lab)
    assert after == before
    names = [t["_name"] for t in up.tasks]
    assert not any(n.endswith(("Streams", "Consumers")) for n in names), names  # jetstream_modules.yml not run
    said = next(t for t in up.tasks if t["_name"].endswith("Streams left alone (not a fresh lab)"))["msg"]
    assert LEFT_ALONE in said and "make lab-reset" in said, said
    return before


def test_lab_up_mid_migration_restarts_the_service_and_leaves_streams_alone(lab):
    lab.move_vendor_to_vendor_hot()  # phase 1 cut over: vendor.> on AA_VENDOR_HOT
    before = lab_up_restores(lab, "normalize-service")
    legacy = json.loads(before["ATHLETE_ALLY_EVENTS"][0])
    assert "vendor.>" not in legacy["subjects"]  # not put back
    assert "normalize-oura" in before["AA_VENDOR_HOT"][1]


def test_lab_up_post_migration_does_not_recreate_the_legacy_stream(lab):
    # phase 2 cut over and phase 3 done: the core group on AA_CORE_HOT, the legacy stream deleted
    if "AA_VENDOR_HOT" not in (lab.js("STREAM.NAMES")["streams"] or []):
        lab.move_vendor_to_vendor_hot()
    assert lab.js("STREAM.DELETE.ATHLETE_ALLY_EVENTS").get("success"), "legacy stream not deleted"
    res = lab.js("STREAM.CREATE.AA_CORE_HOT", {
        "name": "AA_CORE_HOT", "subjects": ["athlete-ally.>", "sleep.*"], "storage": "file", "retention": "limits",
        "max_age": 48 * 3600 * 10 ** 9, "num_replicas": 3, "duplicate_window": 120 * 10 ** 9})
    assert "error" not in res, res
    hrv = next(c for c in LAB_VARS["lab_consumers"] if c["name"] == "normalize-hrv-durable")
    res = lab.js("CONSUMER.CREATE.AA_CORE_HOT.normalize-hrv-durable", {"stream_name": "AA_CORE_HOT", "config": {
        "durable_name": hrv["name"], "filter_subject": hrv["filter_subject"], "ack_policy": "explicit",
        "ack_wait": 60 * 10 ** 9, "max_deliver": hrv["max_deliver"], "max_ack_pending": hrv["max_ack_pending"],
        "deliver_policy": "all", "replay_policy": "instant"}})
    assert "error" not in res, res
    multi = {"EVENT_STREAM_MODE": "multi", "AA_STREAM_CANDIDATES": "AA_CORE_HOT,AA_VENDOR_HOT,ATHLETE_ALLY_EVENTS"}
    res = lab.driver([("set_env", {"driver_service": "normalize-service", "driver_env": multi})])
    assert res.rc == 0, res.stdout[-3000:]
    assert wait_for(lambda: http("GET", lab.env["NORMALIZE_URL"] + "/health")[0] == 200, 30, interval=0.5)
    before = lab_up_restores(lab, "normalize-service")
    assert sorted(before) == ["AA_CORE_HOT", "AA_VENDOR_HOT"]
    status, body = http("GET", lab.env["NORMALIZE_URL"] + "/health")
    assert body["bindings"] == {"normalize-hrv-durable": "AA_CORE_HOT", "normalize-oura": "AA_VENDOR_HOT"}, body
