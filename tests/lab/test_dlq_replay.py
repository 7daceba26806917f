"""Replaying the DLQ (playbooks/dlq_replay.yml): under load, PostgreSQL stays down until events are dead-lettered
(the service's max-deliver policy); once it is back, a --check run lists them and sends nothing, a run filtered by
subject replays only those, a full run replays the rest, each deleted from the DLQ after its republish was
acknowledged, and a re-run sends nothing. The ledger: every acknowledged event stored exactly once, none left in the
DLQ."""

from __future__ import annotations

import sys
import time
import uuid

import pytest
import yaml

from lab.ansible_run import REPO, run_playbook_file

sys.path.insert(0, str(REPO))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MIGRATION = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "migration.yml").read_text())
DLQ = MIGRATION["migration"]["dlq"]["stream"]
LEGACY = MIGRATION["migration"]["legacy"]["stream"]
CONSUMERS = ("normalize-hrv-durable", "normalize-oura")
TASK = "Replay the selected dead letters"
DEAD_LETTERS_WANTED = 20  # enough to see both subjects and the progress lines; few enough to keep the outage short


def play(*args):
    t0 = time.monotonic()
    res = run_playbook_file(REPO / "playbooks" / "dlq_replay.yml", list(args), timeout=300)
    print("dlq_replay.yml %-50s %5.1f s rc %s" % (" ".join(args), time.monotonic() - t0, res.rc))
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-2000:]
    return res.task(TASK)


def state(lab, stream):
    return lab.js("STREAM.INFO." + stream)["state"]


def wait_for(what, read, holds, timeout):
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if holds(value):
            return value
        assert time.monotonic() < deadline, "%s: still %r after %ss" % (what, value, timeout)
        time.sleep(1)


def outstanding(lab):
    return sum(lab.js("CONSUMER.INFO.%s.%s" % (LEGACY, c)).get("num_pending", 0) +
               lab.js("CONSUMER.INFO.%s.%s" % (LEGACY, c)).get("num_ack_pending", 0) for c in CONSUMERS)


def test_dead_letters_of_a_database_outage_are_replayed_exactly_once(lab, tmp_path):
    created = lab.js("STREAM.CREATE." + DLQ, {
        "name": DLQ, "subjects": MIGRATION["migration"]["dlq"]["subjects"], "storage": "file",
        "retention": "limits", "max_age": 14 * 86400 * 10 ** 9, "num_replicas": 3,
        "duplicate_window": 120 * 10 ** 9})
    assert "error" not in created or created["error"].get("err_code") == 10058, created
    load, ledger, stop = lab.start_load_until_stopped(tmp_path, "dq%s" % uuid.uuid4().hex[:4])
    try:
        time.sleep(3)
        lab.fault("stop-postgres")
        try:  # 5 deliveries with the service's backoff: an event is dead-lettered ~30 s into the outage
            wait_for("dead letters during the outage", lambda: state(lab, DLQ)["messages"],
                     lambda n: n >= DEAD_LETTERS_WANTED, 120)
        finally:
            lab.fault("start-postgres")
        time.sleep(2)
    finally:
        stop.touch()
        print("load", lab.finish_load(load, timeout=120))
    wait_for("the consumers drained after the outage", lambda: outstanding(lab), lambda n: n == 0, 120)
    before = lab.check_ledger(ledger, settle_s=30)
    print("ledger before the replay", {k: v for k, v in before.items() if "_ids" not in k})
    assert before["lost"] == 0 and before["dlq"] > 0, before
    dead = state(lab, DLQ)["messages"]
    legacy_seq = state(lab, LEGACY)["last_seq"]

    listed = play("--check")
    assert listed["matched"] == dead and len(listed["messages"]) == min(dead, 200), listed["msg"]
    assert state(lab, DLQ)["messages"] == dead and state(lab, LEGACY)["last_seq"] == legacy_seq, "check sent nothing"
    subjects = {m["subject"] for m in listed["messages"]}
    assert all(m["msg_id"].startswith("replay:") for m in listed["messages"])

    vendor = [m for m in listed["messages"] if m["subject"].startswith("vendor.")]
    progress = tmp_path / "progress.log"
    first = play("-e", "dlq_replay_subject=vendor.>", "-e", "dlq_replay_progress_file=%s" % progress)
    assert first["deleted"] == first["replayed"] == len(vendor), first["msg"]
    assert state(lab, DLQ)["messages"] == dead - len(vendor)

    rest = play("-e", "dlq_replay_progress_file=%s" % progress, "-e", "dlq_replay_since=1h")
    assert rest["replayed"] == rest["deleted"] == dead - len(vendor) and rest["changed"], rest["msg"]
    assert {m["ack"]["stream"] for m in rest["messages"]} == {LEGACY}
    assert state(lab, DLQ)["messages"] == 0
    lines = progress.read_text().splitlines()
    print("progress", len(lines), "lines; last:", lines[-1])
    assert lines and lines[-1].endswith("done")

    seq = state(lab, LEGACY)["last_seq"]
    again = play()
    assert again["matched"] == 0 and not again["changed"] and state(lab, LEGACY)["last_seq"] == seq

    wait_for("the replayed events processed", lambda: outstanding(lab), lambda n: n == 0, 60)
    after = lab.check_ledger(ledger, settle_s=30)
    summary = {k: v for k, v in after.items() if "_ids" not in k}
    print("ledger after the replay", summary, "subjects", sorted(subjects))
    assert after["lost"] == 0 and after["unexpected"] == 0 and after["duplicates"] == 0, summary
    assert after["dlq"] == 0, summary
