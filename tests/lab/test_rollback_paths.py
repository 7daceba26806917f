"""The rollback paths under load, with the loss ledger, on one lab (each test starts where the last ended):

- after phase 3: the migration run through phase 3 (legacy stream deleted, its configuration journaled first),
  then the emergency rollback recreates the legacy stream and its consumers from the journal and moves every
  subject back; every acknowledged event is stored exactly once and the service ends single-mode on it;
- discard: phase 1 again, its new consumer paused (nobody processes it), the rollback with
  -e migration_rollback_discard=true proceeds, says what it loses, and the ledger shows exactly those lost;
- refuse: phase 0's rollback refuses, in one line and changing nothing, while the DLQ holds a dead letter.
(The deferred path: tests/lab/test_rollback_deferred.py.)
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import time
import uuid

import pytest

from tests.support.rollback_play import ok, play

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

LEGACY, VENDOR, CORE, DLQ = "ATHLETE_ALLY_EVENTS", "AA_VENDOR_HOT", "AA_CORE_HOT", "AA_DLQ"
LEGACY_SUBJECTS = {"athlete-ally.>", "vendor.>", "sleep.*"}
CONSUMERS = {"normalize-hrv-durable", "normalize-oura"}
RESTORE_POINT = "aa.migration.legacy_restore_point"
SECONDS = {}


def said(res, name):
    return [t.get("msg") for t in res.tasks if name in t["_name"] and t.get("msg") and not t.get("skipped")]


def stream(lab, name):
    reply = lab.js("STREAM.INFO." + name)
    return None if "error" in reply else reply


def consumer(lab, stream_name, name):
    reply = lab.js("CONSUMER.INFO.%s.%s" % (stream_name, name))
    return None if "error" in reply else reply


def behind(lab, stream_name, name):
    info = consumer(lab, stream_name, name) or {}
    return info.get("num_pending", 0) + info.get("num_ack_pending", 0)


def service_env(lab):
    text = (lab.dir / "env.d" / "normalize-service.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def exactly_once(lab, ledger):
    result = lab.check_ledger(ledger, settle_s=30)
    summary = {k: v for k, v in result.items() if "_ids" not in k}
    print("ledger", summary)
    assert result["lost"] == 0 and result["unexpected"] == 0 and result["duplicates"] == 0, summary


def test_rollback_after_phase3_recreates_the_legacy_stream_and_loses_nothing(lab, tmp_path):
    load, ledger, stop = lab.start_load_until_stopped(tmp_path, "rp%s" % uuid.uuid4().hex[:4])
    t0 = time.monotonic()
    try:
        for name in ("preflight.yml", "phase0.yml", "phase1.yml", "phase2.yml"):
            ok(play(name))
        ok(play("phase3.yml", "-e", "migration_legacy_retention_seconds=0"))
        assert stream(lab, LEGACY) is None
        point = json.loads(stream(lab, CORE)["config"]["metadata"][RESTORE_POINT])
        assert {c["durable_name"] for c in point["consumers"]} == CONSUMERS
        assert point["config"]["name"] == LEGACY

        rehearsal = ok(play("rollback.yml", "--check"))
        assert stream(lab, LEGACY) is None and stream(lab, CORE) is not None, "--check changed nothing"
        assert said(rehearsal, "Recreate the legacy stream")

        back = ok(play("rollback.yml"))
        SECONDS["rollback after phase 3"] = back.seconds
        legacy = stream(lab, LEGACY)
        assert legacy is not None and set(legacy["config"]["subjects"]) == LEGACY_SUBJECTS
        assert legacy["state"]["first_seq"] == point["last_seq"] + 1, "the recreated stream continues the sequence"
        assert stream(lab, CORE) is None and stream(lab, VENDOR) is None
        for name in CONSUMERS:
            info = consumer(lab, LEGACY, name)
            assert info is not None and info["num_pending"] + info["num_ack_pending"] <= 100, (name, info)
        env = service_env(lab)
        assert env["EVENT_STREAM_MODE"] == "single" and env["AA_STREAM_CANDIDATES"] == LEGACY, env

        again = ok(play("rollback.yml"))
        assert again.changed == 0, [t["_name"] for t in again.tasks if t.get("changed")]
    finally:
        stop.touch()
        print("load", lab.finish_load(load, timeout=120))
    exactly_once(lab, ledger)
    SECONDS["after-phase-3 test"] = round(time.monotonic() - t0, 1)
    print("seconds", SECONDS)


def test_discard_proceeds_says_what_it_loses_and_the_ledger_shows_exactly_those(lab, tmp_path):
    load, ledger, stop = lab.start_load_until_stopped(tmp_path, "rx%s" % uuid.uuid4().hex[:4])
    t0 = time.monotonic()
    try:
        ok(play("phase1.yml"))
        # Nobody processes the new consumer now (paused), while the service stays healthy.
        until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10)).isoformat()
        paused = lab.js("CONSUMER.PAUSE.%s.normalize-oura" % VENDOR, {"pause_until": until.replace("+00:00", "Z")})
        assert paused.get("paused") is True, paused
        deadline = time.monotonic() + 60
        while behind(lab, VENDOR, "normalize-oura") < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert behind(lab, VENDOR, "normalize-oura") >= 5

        res = ok(play("phase1.yml", "--tags", "rollback", "-e", "migration_rollback_discard=true"))
        SECONDS["discard rollback"] = res.seconds
        lines = said(res, "Say what the discard loses")
        assert lines and "normalize-oura" in lines[0] and "lost" in lines[0], lines
        lost_said = int(re.search(r"\((\d+) messages\)", lines[0]).group(1))
        assert stream(lab, VENDOR) is None and "vendor.>" in stream(lab, LEGACY)["config"]["subjects"]
    finally:
        stop.touch()
        print("load", lab.finish_load(load, timeout=120))
    result = lab.check_ledger(ledger, settle_s=20)
    print("ledger", {k: v for k, v in result.items() if "_ids" not in k}, "said lost", lost_said)
    acked_by = {}
    for line in ledger.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("outcome") == "acked":
            acked_by[rec["id"]] = rec.get("stream")
    assert result["lost"] == lost_said and result["unexpected"] == 0 and result["duplicates"] == 0, result
    assert {acked_by[i] for i in result["lost_ids"]} == {VENDOR}, "only what the discarded stream held is lost"
    SECONDS["discard test"] = round(time.monotonic() - t0, 1)
    print("seconds", SECONDS)


def publish_dead_letter(lab):
    import nats

    async def go():
        nc = await nats.connect(lab.env["NATS_URL"].split(","), user=lab.env["NATS_USER"],
                                password=lab.env["NATS_PASSWORD"])
        try:
            await nc.request("dlq.vendor.oura.webhook.received", b'{"poison": true}', timeout=5)
        finally:
            await nc.close()
    asyncio.run(go())


def test_phase0_rollback_refuses_while_the_dlq_holds_a_dead_letter_and_changes_nothing(lab):
    t0 = time.monotonic()
    publish_dead_letter(lab)
    before = stream(lab, DLQ)
    assert before["state"]["messages"] >= 1
    res = play("phase0.yml", "--tags", "rollback")
    assert res.rc != 0
    failed = [t.get("msg") for t in res.tasks if t.get("failed") and not t.get("ignored")]
    assert failed and "\n" not in failed[-1] and "refused, nothing was changed" in failed[-1], failed
    assert "dlq_replay.yml" in failed[-1]
    after = stream(lab, DLQ)
    assert after is not None and after["state"]["messages"] == before["state"]["messages"]
    assert after["config"] == before["config"]
    SECONDS["refuse test"] = round(time.monotonic() - t0, 1)
    print("seconds", SECONDS)
