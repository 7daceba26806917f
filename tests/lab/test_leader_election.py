"""The services ride out a stream leader election under load: the leader of ATHLETE_ALLY_EVENTS and the node
normalize-service is connected to are SIGKILLed and come back 8 s later; every durable drains to 0 and the
ledger shows nothing lost."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.lab.test_lab import http, js_api
from tests.support.polling import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

STREAM = "ATHLETE_ALLY_EVENTS"
DURABLES = ("normalize-hrv-durable", "normalize-oura")
NODE_DOWN_S = 8


def consumer_state(lab, consumers):
    """{"STREAM/durable": (num_pending, num_ack_pending)}, or None while the cluster cannot answer."""
    out = {}
    for stream, durable in consumers:
        try:
            info = js_api(lab, "$JS.API.CONSUMER.INFO.%s.%s" % (stream, durable))
        except Exception:  # noqa: BLE001 - no quorum / node restarting: ask again
            return None
        if "error" in info:
            return None
        out["%s/%s" % (stream, durable)] = (info["num_pending"], info["num_ack_pending"])
    return out


def wait_drained(lab, consumers, timeout, stall_s):
    """Poll until every consumer has num_pending == num_ack_pending == 0. Fails when the backlog has not shrunk
    for stall_s seconds (a consumer nobody pulls from any more) or after timeout; prints the progress."""
    deadline = time.monotonic() + timeout
    best, best_at, history, state = None, time.monotonic(), [], None
    while True:
        state = consumer_state(lab, consumers)
        now = time.monotonic()
        if state is not None:
            history.append((round(now - (deadline - timeout), 1), state))
            print("drain %5.1fs %s" % history[-1])
            backlog = sum(p + a for p, a in state.values())
            if backlog == 0:
                return history
            if best is None or backlog < best:
                best, best_at = backlog, now
        assert now - best_at < stall_s, "backlog stuck at %s for %ss (nobody pulls): %s; normalize health %s" % (
            state, stall_s, history[-5:], http("GET", lab.env["NORMALIZE_URL"] + "/health"))
        assert now < deadline, "not drained after %ss: %s" % (timeout, history[-5:])
        time.sleep(1)


def test_leader_and_normalize_server_sigkilled_under_load_nothing_lost(lab):
    status, body = http("GET", lab.env["NORMALIZE_URL"] + "/health")
    assert status == 200 and set(body["bindings"].values()) == {STREAM}, body
    proc, ledger = lab.start_load("le%s" % uuid.uuid4().hex[:4], 30)
    killed = []
    victims = lab.fault("server-of", "normalize-service")["nodes"]
    try:
        time.sleep(6)
        leader = lab.fault("kill-leader", STREAM)
        killed.append(leader["leader"])
        for node in victims:  # also the node normalize is connected to (unless that was the leader)
            if node not in killed:
                lab.fault("kill-nats", node)
                killed.append(node)
        print("killed %s (leader of %s: %s)" % (killed, STREAM, leader["leader"]))
        time.sleep(NODE_DOWN_S)
    finally:
        for node in killed:
            assert lab.fault("restart-nats", node)["after"] == "RUNNING"
    summary = lab.finish_load(proc)
    print("load: %s" % summary)
    history = wait_drained(lab, [(STREAM, d) for d in DURABLES], timeout=150, stall_s=45)
    print("drained after %.1fs" % history[-1][0])
    report = lab.check_ledger(ledger, settle_s=30)
    keys = ("sent", "acked", "lost", "unknown", "unknown_stored", "duplicates", "publish_gap_ms")
    print("leader election report: %s" % {k: report[k] for k in keys})
    assert report["lost"] == 0 and report["unexpected"] == 0, report
    assert report["acked"] > 0.9 * report["sent"], report  # ingest rode it out within its retry budget
    status, body = http("GET", lab.env["NORMALIZE_URL"] + "/health")
    assert status == 200 and set(body["bindings"].values()) == {STREAM}, body
    status, body = http("GET", lab.env["INGEST_URL"] + "/health")
    assert status == 200, body


def leaders(lab, stream, durable):
    return (lab.js("STREAM.INFO." + stream).get("cluster", {}).get("leader"),
            lab.js("CONSUMER.INFO.%s.%s" % (stream, durable)).get("cluster", {}).get("leader"))


def test_mid_migration_vendor_hot_leader_on_normalize_server_sigkilled_nothing_lost(lab):
    """The incident: multi mode during the migration, normalize-oura bound to AA_VENDOR_HOT, the node that leads
    AA_VENDOR_HOT (stream and consumer) and holds normalize's connection is SIGKILLed and back 8 s later.
    normalize must end up bound to AA_VENDOR_HOT again (not to the drained legacy consumer) and drain it."""
    lab.move_vendor_to_vendor_hot()
    multi = {"EVENT_STREAM_MODE": "multi", "AA_STREAM_CANDIDATES": "AA_CORE_HOT,AA_VENDOR_HOT,ATHLETE_ALLY_EVENTS"}
    res = lab.driver([("set_env", {"driver_service": "normalize-service", "driver_env": multi})])
    assert res.rc == 0, res.stdout[-3000:]
    want = {"normalize-hrv-durable": STREAM, "normalize-oura": "AA_VENDOR_HOT"}

    def bound_as_wanted():
        status, body = http("GET", lab.env["NORMALIZE_URL"] + "/health")
        return status == 200 and body["bindings"] == want

    assert wait_for(bound_as_wanted, 30, interval=0.5), http("GET", lab.env["NORMALIZE_URL"] + "/health")
    node = lab.fault("server-of", "normalize-service")["nodes"][0]
    # put AA_VENDOR_HOT's stream and consumer leaders on the node normalize is connected to
    for _attempt in range(10):
        if leaders(lab, "AA_VENDOR_HOT", "normalize-oura") == (node, node):
            break
        stream_leader, consumer_leader = leaders(lab, "AA_VENDOR_HOT", "normalize-oura")
        if stream_leader != node:
            lab.js("STREAM.LEADER.STEPDOWN.AA_VENDOR_HOT", {"placement": {"preferred": node}})
        if consumer_leader != node:
            lab.js("CONSUMER.LEADER.STEPDOWN.AA_VENDOR_HOT.normalize-oura", {"placement": {"preferred": node}})
        time.sleep(1)
    assert leaders(lab, "AA_VENDOR_HOT", "normalize-oura") == (node, node)

    proc, ledger = lab.start_load("mm%s" % uuid.uuid4().hex[:4], 30)
    try:
        time.sleep(6)
        killed = lab.fault("kill-nats", node)
        assert killed["after"] != "RUNNING", killed
        print("killed %s: leader of AA_VENDOR_HOT and normalize-oura there, normalize connected to it" % node)
        time.sleep(NODE_DOWN_S)
    finally:
        assert lab.fault("restart-nats", node)["after"] == "RUNNING"
    summary = lab.finish_load(proc)
    print("load: %s" % summary)
    consumers = [(STREAM, "normalize-hrv-durable"), (STREAM, "normalize-oura"), ("AA_VENDOR_HOT", "normalize-oura")]
    history = wait_drained(lab, consumers, timeout=150, stall_s=45)
    print("drained after %.1fs" % history[-1][0])
    report = lab.check_ledger(ledger, settle_s=30)
    keys = ("sent", "acked", "lost", "unknown", "unknown_stored", "duplicates", "publish_gap_ms")
    print("mid-migration leader election report: %s" % {k: report[k] for k in keys})
    assert report["lost"] == 0 and report["unexpected"] == 0, report
    assert wait_for(bound_as_wanted, 30, interval=0.5), http("GET", lab.env["NORMALIZE_URL"] + "/health")
