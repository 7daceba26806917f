"""Riding through a leader election: a stream's leader node is SIGKILLed while modules run, and is back 8 s later.

A 3-node cluster of its own (nodes are killed here); an R3 stream whose leader is not the meta leader, so the
fault is "no stream leader" and writes still have a meta leader to go to. Tasks run through ansible-playbook.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import nats
import pytest

from lab.ansible_run import run_tasks
from lab.nats_cluster import NatsCluster, accounts_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import errors, retry  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import JetStreamClient  # noqa: E402

APP_PASSWORD = "app-Pw-r3try"
SYS_PASSWORD = "sys-Pw-r3try"
ACCOUNTS = accounts_config(SYS_PASSWORD, APP_PASSWORD)
APP = dict(user="app", password=APP_PASSWORD)
NODE_DOWN_S = 8  # the fault being ridden through: how long the killed node stays down


@pytest.fixture(scope="module")
def rcluster(tmp_path_factory):
    c = NatsCluster(tmp_path_factory.mktemp("retrycluster"), size=3, extra=ACCOUNTS, name="r")
    c.start(**APP)
    try:
        yield c
    finally:
        c.stop()


def meta_leader(cluster):
    async def go():
        nc = await nats.connect(cluster.live_urls(), user="sys", password=SYS_PASSWORD, allow_reconnect=False)
        try:
            msg = await nc.request("$SYS.REQ.SERVER.PING.JSZ", b"", timeout=2)
            return json.loads(msg.data)["data"]["meta_cluster"].get("leader")
        finally:
            await nc.close()
    return asyncio.run(go())


def r3_stream(cluster, name, subjects):
    """An R3 stream whose leader is healthy and is not the meta leader; returns the leader's node index."""
    config = {"name": name, "subjects": subjects, "num_replicas": 3, "storage": "file"}
    reply = cluster.js_api("STREAM.CREATE.%s" % name, config, timeout=10, **APP)
    assert "error" not in reply or reply["error"]["err_code"] == 10058, reply
    deadline = time.time() + 60
    while True:
        leader = cluster.wait_stream_healthy(name, **APP)["leader"]
        meta = meta_leader(cluster)
        if meta and leader != meta:
            return cluster.node_index(leader)
        assert time.time() < deadline, "stream %s leader stays on the meta leader %s" % (name, meta)
        cluster.js_api("STREAM.LEADER.STEPDOWN.%s" % name, timeout=5, **APP)


class Fault(object):
    """SIGKILL node ``index`` once ``trigger()`` is true (bounded polling), restart it NODE_DOWN_S later.

    With ``freeze`` (a node index) that node is SIGSTOPped for the same time: with no quorum the cluster cannot elect
    a new leader, so the stream stays leaderless for the whole outage however slowly the tasks run. Without it a new
    leader can be in place within seconds, which a task is not sure to see on a busy machine."""

    def __init__(self, cluster, index, trigger=lambda: True, freeze=None):
        self.cluster, self.index, self.trigger, self.freeze = cluster, index, trigger, freeze
        self.killed_at = self.restarted_at = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            deadline = time.time() + 120
            while not self.trigger():
                if time.time() > deadline:
                    raise RuntimeError("fault trigger never fired")
                time.sleep(0.05)
            if self.freeze is not None:
                os.kill(self.cluster.procs[self.freeze].pid, signal.SIGSTOP)
            try:
                self.cluster.kill_node(self.index)
                self.killed_at = time.time()
                time.sleep(NODE_DOWN_S)  # the outage itself, not a wait for convergence
            finally:
                if self.freeze is not None:
                    os.kill(self.cluster.procs[self.freeze].pid, signal.SIGCONT)
            self.cluster.start_node(self.index)
            self.restarted_at = time.time()
        except Exception as exc:  # reported by join()
            self.error = exc

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.thread.join(150)
        assert not self.thread.is_alive(), "fault thread hung"
        assert self.error is None, self.error
        assert self.killed_at and self.restarted_at


def info_loop(stream, marker_dir, **args):
    """jetstream_info on ``stream`` again and again from when ``started`` is touched until ``done`` exists."""
    args = dict(dict(gather=["stream"], stream=stream, request_timeout=2), **args)
    return [
        {"name": "started", "ansible.builtin.file": {"path": str(marker_dir / "started"), "state": "touch"}},
        {"name": "info loop", "athlete_ally.nats.jetstream_info": args, "register": "out", "ignore_errors": True,
         "loop": "{{ range(0, 400) | list }}",
         "loop_control": {"break_when": ["'%s' is exists" % (marker_dir / "done")]}},
    ]


def run_info_loop_through_fault(cluster, tmp_path, stream, freeze_another=False, **args):
    leader = r3_stream(cluster, stream, ["%s.>" % stream.lower()])
    freeze = next(i for i in range(len(cluster.procs)) if i != leader) if freeze_another else None
    fault = Fault(cluster, leader, trigger=(tmp_path / "started").exists, freeze=freeze).start()
    box = {}
    tasks = info_loop(stream, tmp_path, **args)
    runner = threading.Thread(target=lambda: box.update(res=run_tasks(tasks, servers=cluster.urls, defaults=APP)))
    runner.start()
    try:
        fault.join()
        cluster.wait_ready(timeout=60, **APP)
        cluster.wait_stream_healthy(stream, **APP)
    finally:
        (tmp_path / "done").touch()
        runner.join(300)
    assert not runner.is_alive(), "playbook did not stop after the done marker"
    res = box["res"]
    assert res.data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    task = res.task("info loop")
    assert len(task["results"]) >= 2, task
    return task, task["results"]


def warnings_of(result):
    """A task's warnings (ansible-core gathers a loop's item warnings on the task)."""
    return [w if isinstance(w, str) else json.dumps(w) for w in result.get("warnings") or []]


def test_info_loop_rides_through_stream_leader_sigkill(rcluster, tmp_path):
    task, items = run_info_loop_through_fault(rcluster, tmp_path, "RT_INFO")
    failed = [i for i in items if i.get("failed")]
    assert not failed, [i.get("msg") for i in failed]
    assert all(i["stream"]["exists"] for i in items)
    retried = warnings_of(task)
    print("\n".join(retried))
    assert any(w.startswith("STREAM.INFO.RT_INFO: ") and "retrying in" in w and "retry budget used" in w
               for w in retried), (len(items), retried)


def transient_refusal(msg):
    """Whether ``msg`` is a JetStream API error reply the client counts as transient (refused, not applied)."""
    found = re.search(r"^JetStream API \S+ failed: .* \(code \d+, err_code (\d+)\)$", msg)
    return bool(found) and int(found.group(1)) in retry.TRANSIENT_ERR_CODES


def test_budget_zero_fails_in_one_line_on_the_same_fault(rcluster, tmp_path):
    # No quorum during the outage: every read in it meets the fault (a quick re-election could dodge it).
    task, items = run_info_loop_through_fault(rcluster, tmp_path, "RT_ZERO", freeze_another=True, retry_budget=0)
    failed = [i for i in items if i.get("failed")]
    assert failed, "no item met the fault: %s" % [i.get("msg") for i in items]
    for item in failed:
        msg = item["msg"]
        assert "\n" not in msg and "retry" not in msg, msg
        # A read meets the fault as a request timeout, a closed connection, (on the frozen node) a connect
        # timeout, or, while quorum returns, the server's own transient refusal (e.g. 503 err_code 10008 before a
        # meta leader is elected): each in one line, none retried.
        assert ("timed out after 2.0s; raise request_timeout or check that the stream has a leader" in msg
                or "connection closed" in msg or msg.startswith("cannot reach NATS at ")
                or transient_refusal(msg)), msg
    assert not warnings_of(task)


def test_stream_update_right_after_leader_sigkill(rcluster, tmp_path):
    leader = r3_stream(rcluster, "RT_UPD", ["rtupd.>"])
    # The kill is the play's first task, so the update starts while the stream has no leader.
    pid = rcluster.procs[leader].pid
    fault = Fault(rcluster, leader, trigger=lambda: rcluster.procs[leader].poll() is not None)
    tasks = [
        {"name": "kill leader", "ansible.builtin.command": {"argv": ["kill", "-9", str(pid)]}},
        {"name": "update", "athlete_ally.nats.jetstream_stream": {
            "name": "RT_UPD", "subjects": ["rtupd.>"], "replicas": 3, "description": "updated mid-election",
            "request_timeout": 2}},
    ]
    box = {}
    runner = threading.Thread(target=lambda: box.update(res=run_tasks(tasks, servers=rcluster.urls, defaults=APP)))
    runner.start()
    fault.start()
    runner.join(300)
    fault.join()
    rcluster.wait_ready(timeout=60, **APP)
    rcluster.wait_stream_healthy("RT_UPD", **APP)
    res = box["res"]
    assert res.rc == 0, res.stdout[-4000:]
    out = res.task("update")
    print("\n".join(warnings_of(out)))
    assert out["changed"] is True and out["config"]["description"] == "updated mid-election"
    assert any(w.startswith("STREAM.INFO.RT_UPD: ") and "retrying in" in w for w in warnings_of(out)), out
    assert rcluster.js_api("STREAM.INFO.RT_UPD", **APP)["config"]["description"] == "updated mid-election"


def test_overlapping_subjects_are_not_retried(rcluster):
    r3_stream(rcluster, "RT_OWNER", ["rtover.>"])
    js = JetStreamClient(dict(servers=rcluster.urls, retry_budget=30, **APP))
    with js:
        started = time.monotonic()
        with pytest.raises(errors.ApiError) as err:
            js.request("STREAM.CREATE.RT_CLASH", {"name": "RT_CLASH", "subjects": ["rtover.a"], "num_replicas": 3})
        assert time.monotonic() - started < 3
    assert err.value.err_code == errors.STREAM_SUBJECT_OVERLAP and js.warnings == []
    # Through a module: one line, quickly, and no retry warning.
    started = time.monotonic()
    res = run_tasks([{"name": "clash", "athlete_ally.nats.jetstream_stream": {
        "name": "RT_CLASH", "subjects": ["rtover.>"], "replicas": 3}}], servers=rcluster.urls, defaults=APP)
    assert res.rc != 0
    out = res.task("clash")
    assert "overlap" in out["msg"] and "\n" not in out["msg"] and not warnings_of(out)
    assert time.monotonic() - started < 25  # ansible-playbook startup on a busy machine; a retry would take 30 s


def test_client_reconnects_when_its_own_server_dies_mid_request(rcluster):
    """The server the client talks to is killed while a request is waiting (the stream has no leader)."""
    leader = r3_stream(rcluster, "RT_CONN", ["rtconn.>"])
    js = JetStreamClient(dict(servers=rcluster.urls, retry_budget=45, request_timeout=3, **APP))
    with js:
        port = int(js.where.rsplit(":", 1)[1])
        mine = rcluster.client_ports.index(port)
        if mine == leader:  # move the leadership away from our server
            rcluster.js_api("STREAM.LEADER.STEPDOWN.RT_CONN", timeout=5, **APP)
            deadline = time.time() + 60
            while rcluster.node_index(rcluster.wait_stream_healthy("RT_CONN", **APP)["leader"]) == mine:
                assert time.time() < deadline
                rcluster.js_api("STREAM.LEADER.STEPDOWN.RT_CONN", timeout=5, **APP)
            leader = rcluster.node_index(rcluster.wait_stream_healthy("RT_CONN", **APP)["leader"])
        rcluster.kill_node(leader)  # the stream now has no leader: STREAM.INFO waits (no election within 4 s)
        sent = time.time()
        # 1 s into the request (which can only time out after 3 s) our own server dies too.
        ours = Fault(rcluster, mine, trigger=lambda: time.time() > sent + 1).start()
        restart_leader = threading.Timer(NODE_DOWN_S, rcluster.start_node, args=(leader,))
        restart_leader.start()
        try:
            info = js.request("STREAM.INFO.RT_CONN")
        finally:
            restart_leader.join()
            ours.join()
        assert info["config"]["name"] == "RT_CONN"
        assert int(js.where.rsplit(":", 1)[1]) != port or ours.restarted_at
    lines = js.warnings
    print("\n".join(lines))
    assert any("connection to nats://127.0.0.1:%d lost" % port in w or "connection closed" in w
               or "cannot reconnect" in w for w in lines), lines
    rcluster.wait_ready(timeout=60, **APP)
    rcluster.wait_stream_healthy("RT_CONN", **APP)
