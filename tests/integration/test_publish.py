"""jetstream_publish through ansible-playbook on the shared 3-node cluster: ack, dedupe, retries."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request

import pytest

from lab.ansible_run import run_tasks
from lab.nats_cluster import NatsCluster, free_ports
from tests.support.jsapi import api


def pub_task(name="pub", register="out", **args):
    return {"name": name, "athlete_ally.nats.jetstream_publish": args, "register": register}


@pytest.fixture
def stream(cluster, request):
    name = "PUB_" + request.node.name[-24:].upper().replace("[", "_").replace("]", "")
    prefix = name.lower()
    api(cluster.url, "STREAM.CREATE." + name, {"name": name, "subjects": [prefix + ".>"], "num_replicas": 3,
                                               "duplicate_window": 120 * 10 ** 9})
    yield name, prefix
    api(cluster.url, "STREAM.DELETE." + name)


def test_publish_acks_and_dedupes_by_msg_id(cluster, stream):
    name, prefix = stream
    args = dict(subject=prefix + ".test.phase0", payload_json={"test": "dlq-verification", "phase": 0},
                msg_id="phase0-check-1", expected_stream=name, headers={"X-Run": 7})
    res = run_tasks([pub_task(**args), pub_task(name="again", register="again", **args)], servers=cluster.urls)
    assert res.rc == 0, res.stdout[-3000:]
    first, again = res.task("pub"), res.task("again")
    assert first["changed"] is True and first["attempts"] == 1
    assert first["ack"] == {"stream": name, "seq": 1, "duplicate": False, "domain": None}
    assert again["changed"] is False and again["ack"]["duplicate"] is True and again["ack"]["seq"] == 1
    assert res.changed == 1
    stored = api(cluster.url, "STREAM.MSG.GET." + name, {"seq": 1})["message"]
    assert stored["subject"] == prefix + ".test.phase0"
    assert json.loads(base64.b64decode(stored["data"])) == {"test": "dlq-verification", "phase": 0}
    hdrs = base64.b64decode(stored["hdrs"]).decode()
    assert "Nats-Msg-Id: phase0-check-1" in hdrs and "X-Run: 7" in hdrs
    assert api(cluster.url, "STREAM.INFO." + name)["state"]["messages"] == 1


def test_check_mode_publishes_nothing(cluster, stream):
    name, prefix = stream
    res = run_tasks([pub_task(subject=prefix + ".x", payload="hello")], servers=cluster.urls, check=True)
    assert res.rc == 0, res.stdout[-3000:]
    out = res.task("pub")
    assert out["changed"] is True and out["attempts"] == 0 and out["ack"] is None
    assert "check mode" in out["msg"]
    assert api(cluster.url, "STREAM.INFO." + name)["state"]["messages"] == 0


def test_wrong_expected_stream_is_one_line_and_not_retried(cluster, stream):
    name, prefix = stream
    res = run_tasks([pub_task(subject=prefix + ".x", payload="x", expected_stream="OTHER")], servers=cluster.urls)
    assert res.rc != 0
    out = res.task("pub")
    assert "\n" not in out["msg"] and "rejected" in out["msg"] and "expected stream" in out["msg"].lower()
    assert out["attempts"] == 1


def test_no_stream_fails_after_retries_with_one_line(cluster):
    start = time.time()
    res = run_tasks([pub_task(subject="nostream.owns.this", payload="x", retries=2, retry_delay=0.1)],
                    servers=cluster.urls)
    assert res.rc != 0
    out = res.task("pub")
    assert out["attempts"] == 3
    assert "\n" not in out["msg"]
    assert "after 3 attempts" in out["msg"] and "nostream.owns.this" in out["msg"]
    assert time.time() - start < 30


def _connz(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/connz?subs=0" % port, timeout=2) as resp:
        return json.loads(resp.read())["connections"] or []


def test_retry_succeeds_once_a_stream_appears(tmp_path):
    """The module's first attempt finds no stream (no responders); a stream created ~0.5s later is found."""
    http_port = free_ports(1)[0]
    node = NatsCluster(tmp_path, size=1, name="late", extra="http: \"127.0.0.1:%d\"" % http_port).start()
    name = "PUB_LATE"
    box = []
    tasks = [pub_task(subject="late.event", payload="x", retries=6, retry_delay=0.25)]
    thread = threading.Thread(target=lambda: box.append(run_tasks(tasks, servers=node.urls)))
    try:
        thread.start()
        # Wait until the module's connection has sent its first publish (server-side in_msgs).
        deadline = time.time() + 60
        while time.time() < deadline:
            if any(c.get("name") == "athlete_ally.nats" and c.get("in_msgs", 0) >= 1 for c in _connz(http_port)):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the publish task never sent its first attempt")
        time.sleep(0.5)
        api(node.url, "STREAM.CREATE." + name, {"name": name, "subjects": ["late.>"], "num_replicas": 1})
        thread.join(120)
        res = box[0]
        assert res.rc == 0, res.stdout[-3000:]
        out = res.task("pub")
        assert out["attempts"] > 1 and out["ack"] == {"stream": name, "seq": 1, "duplicate": False, "domain": None}
        assert out["changed"] is True
    finally:
        thread.join(120)
        node.stop()


def test_backoff_doubles_and_is_capped():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))
    from ansible_collections.athlete_ally.nats.plugins.module_utils.publish import backoff
    assert [backoff(n, 0.25, 1.5) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.5, 1.5]
