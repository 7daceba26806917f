"""jetstream_consumer through ansible-playbook against the 3-node session cluster.

Streams are created with raw JSON through the shared client (not the stream module); names are unique per test.
"""

from __future__ import annotations

import datetime
import uuid

import pytest

from lab.ansible_run import run_tasks
from lab.nats_cluster import OLDEST_BINARY, NatsCluster
from tests.support.jsapi import api

MOD = "athlete_ally.nats.jetstream_consumer"
S = 10 ** 9

RUNBOOK = dict(filter_subject="athlete-ally.hrv.raw-received", ack_policy="explicit", max_deliver=5,
               ack_wait="60s", deliver_policy="all", replay_policy="instant", max_ack_pending=1000)
PREFIX = {}  # stream -> subject prefix, so that test streams never overlap


def runbook(stream):
    """The runbook's flags, the filter moved under the stream's own subject prefix."""
    flags = dict(RUNBOOK)
    flags["filter_subject"] = PREFIX.get(stream, "") + RUNBOOK["filter_subject"]
    return flags


def uid(prefix):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:8])


def make_stream(urls, name, subjects=("athlete-ally.>",), replicas=3):
    reply = api(urls, "STREAM.CREATE." + name, {"name": name, "subjects": list(subjects), "num_replicas": replicas,
                                                "storage": "file", "retention": "limits"})
    assert "error" not in reply, reply


def live(urls, stream, name):
    """Consumer info, or None when it does not exist."""
    reply = api(urls, "CONSUMER.INFO.%s.%s" % (stream, name))
    if "error" in reply:
        assert reply["error"]["err_code"] in (10014, 10059), reply
        return None
    return reply


def task(title, **args):
    return {"name": title, MOD: args}


def in_hours(hours):
    stamp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours)
    return stamp.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def stream(cluster):
    name = uid("CORE")
    PREFIX[name] = name.lower() + "."
    make_stream(cluster.urls, name, subjects=[PREFIX[name] + "athlete-ally.>"])
    yield name
    api(cluster.urls, "STREAM.DELETE." + name)


@pytest.fixture
def core_hot(cluster):
    """A stream on the runbook's real subjects (deleted afterwards: only one stream may own them)."""
    name = uid("AA_CORE_HOT")
    make_stream(cluster.urls, name)
    yield name
    api(cluster.urls, "STREAM.DELETE." + name)


def test_create_with_runbook_flags_then_idempotent(cluster, core_hot):
    stream = core_hot
    args = dict(stream=stream, name="normalize-hrv-durable", **RUNBOOK)
    res = run_tasks([task("create", **args), task("again", **args)], servers=cluster.urls)
    assert res.rc == 0, res.stdout
    first, second = res.task("create"), res.task("again")
    assert first["changed"] is True and first["operation"] == "created"
    assert second["changed"] is False and second["operation"] == "none" and second["changed_fields"] == []
    cfg = live(cluster.urls, stream, "normalize-hrv-durable")["config"]
    assert cfg["durable_name"] == "normalize-hrv-durable"
    assert cfg["filter_subject"] == "athlete-ally.hrv.raw-received"
    assert cfg["ack_policy"] == "explicit" and cfg["deliver_policy"] == "all"
    assert cfg["replay_policy"] == "instant"
    assert cfg["max_deliver"] == 5 and cfg["ack_wait"] == 60 * S and cfg["max_ack_pending"] == 1000
    assert first["config"]["ack_wait"] == 60 * S
    for key in ("num_pending", "num_ack_pending", "num_redelivered", "num_waiting", "delivered", "ack_floor",
                "cluster", "paused"):
        assert key in second["state"], key
    assert second["state"]["num_pending"] == 0 and second["state"]["paused"] is False


def test_idempotent_with_push_settings_metadata_and_filters(cluster, stream):
    args = dict(stream=stream, name="push-c", deliver_subject="deliver.%s" % stream, deliver_group="workers",
                flow_control=True, idle_heartbeat="5s",
                filter_subjects=[PREFIX[stream] + "athlete-ally.a", PREFIX[stream] + "athlete-ally.b.*"],
                backoff=["1s", "5s", "30s"], max_deliver=6, metadata={"owner": "platform", "phase": 2},
                description="push consumer", sample_freq="100", rate_limit=1000000, headers_only=False,
                replicas=0, mem_storage=False)
    res = run_tasks([task("create", **args), task("again", **args)], servers=cluster.urls)
    assert res.rc == 0, res.stdout
    assert res.task("create")["changed"] is True
    assert res.task("again")["changed"] is False, res.task("again")
    cfg = live(cluster.urls, stream, "push-c")["config"]
    assert cfg["ack_wait"] == 1 * S and cfg["backoff"] == [S, 5 * S, 30 * S]
    assert sorted(cfg["filter_subjects"]) == [PREFIX[stream] + "athlete-ally.a", PREFIX[stream] + "athlete-ally.b.*"]
    assert cfg["metadata"]["owner"] == "platform" and cfg["metadata"]["phase"] == "2"
    assert cfg["deliver_group"] == "workers" and cfg["idle_heartbeat"] == 5 * S


def test_check_mode_writes_nothing(cluster, stream):
    run_tasks([task("create", stream=stream, name="c", **runbook(stream))], servers=cluster.urls)
    before = live(cluster.urls, stream, "c")["config"]
    res = run_tasks([task("change", stream=stream, name="c", ack_wait="90s", description="x"),
                     task("new", stream=stream, name="other", **runbook(stream)),
                     task("delete", stream=stream, name="c", state="absent")],
                    servers=cluster.urls, check=True)
    assert res.rc == 0, res.stdout
    change = res.task("change")
    assert change["changed"] is True and change["changed_fields"] == ["ack_wait", "description"]
    assert change["config"]["ack_wait"] == 90 * S  # predicted
    assert res.task("new")["changed"] is True and res.task("new")["operation"] == "created"
    assert res.task("delete")["changed"] is True
    assert live(cluster.urls, stream, "c")["config"] == before
    assert live(cluster.urls, stream, "other") is None


def test_diff_mode_shows_before_and_after(cluster, stream):
    run_tasks([task("create", stream=stream, name="c", **runbook(stream))], servers=cluster.urls)
    res = run_tasks([task("change", stream=stream, name="c", ack_wait="90s")], servers=cluster.urls, diff=True)
    assert res.rc == 0, res.stdout
    diff = res.task("change")["diff"]
    assert diff["before"]["ack_wait"] == "1m" and diff["after"]["ack_wait"] == "90s"
    assert diff["before"]["max_deliver"] == diff["after"]["max_deliver"] == 5
    assert not any(k.startswith("_nats.") for k in diff["before"].get("metadata", {}))


def test_mutable_update_keeps_omitted_options(cluster, stream):
    run_tasks([task("create", stream=stream, name="c", description="hrv", **runbook(stream))], servers=cluster.urls)
    res = run_tasks([task("update", stream=stream, name="c", ack_wait=90, max_ack_pending=500),
                     task("again", stream=stream, name="c", ack_wait="1m30s")], servers=cluster.urls)
    assert res.rc == 0, res.stdout
    assert res.task("update")["changed_fields"] == ["ack_wait", "max_ack_pending"]
    assert res.task("again")["changed"] is False
    cfg = live(cluster.urls, stream, "c")["config"]
    assert cfg["ack_wait"] == 90 * S and cfg["max_ack_pending"] == 500
    # everything the task left out kept its live value
    assert cfg["max_deliver"] == 5 and cfg["description"] == "hrv"
    assert cfg["filter_subject"] == PREFIX[stream] + "athlete-ally.hrv.raw-received"


def test_immutable_change_refused_before_any_write(cluster, stream):
    run_tasks([task("create", stream=stream, name="c", **runbook(stream))], servers=cluster.urls)
    before = live(cluster.urls, stream, "c")["config"]
    res = run_tasks([task("bad", stream=stream, name="c", deliver_policy="new", ack_policy="none", ack_wait="5s")],
                    servers=cluster.urls)
    bad = res.task("bad")
    assert bad.get("failed") is True
    msg = bad["msg"]
    assert "\n" not in msg
    assert "deliver_policy is 'all', asked 'new'" in msg, msg
    assert "ack_policy is 'explicit', asked 'none'" in msg, msg
    assert "nothing was written" in msg
    assert live(cluster.urls, stream, "c")["config"] == before  # not even the mutable ack_wait

    res = run_tasks([task("push", stream=stream, name="c", deliver_subject="x.y")], servers=cluster.urls)
    assert res.task("push").get("failed") is True
    assert "pull to push" in res.task("push")["msg"]
    assert live(cluster.urls, stream, "c")["config"] == before


def test_pause_and_resume(cluster, stream):
    until = in_hours(1)
    run_tasks([task("create", stream=stream, name="c", **runbook(stream))], servers=cluster.urls)
    res = run_tasks([task("pause", stream=stream, name="c", pause_until=until),
                     task("pause again", stream=stream, name="c", pause_until=until, paused=True)],
                    servers=cluster.urls)
    assert res.rc == 0, res.stdout
    assert res.task("pause")["changed"] is True and res.task("pause")["changed_fields"] == ["pause_until"]
    assert res.task("pause")["state"]["paused"] is True
    assert res.task("pause again")["changed"] is False
    info = live(cluster.urls, stream, "c")
    assert info.get("paused") is True and info["config"]["pause_until"].startswith(until[:19])

    res = run_tasks([task("resume", stream=stream, name="c", paused=False),
                     task("resume again", stream=stream, name="c", paused=False)], servers=cluster.urls)
    assert res.rc == 0, res.stdout
    assert res.task("resume")["changed"] is True and res.task("resume")["state"]["paused"] is False
    assert res.task("resume again")["changed"] is False
    assert not live(cluster.urls, stream, "c").get("paused")


def test_create_paused(cluster, stream):
    until = in_hours(2)
    res = run_tasks([task("create", stream=stream, name="c", pause_until=until, **runbook(stream)),
                     task("again", stream=stream, name="c", pause_until=until, **runbook(stream))],
                    servers=cluster.urls)
    assert res.rc == 0, res.stdout
    assert res.task("create")["state"]["paused"] is True
    assert res.task("again")["changed"] is False


@pytest.mark.skipif(OLDEST_BINARY is None, reason="nats-server 2.10 not installed (make setup)")
def test_old_server_consumer_works_and_pause_fails_clearly(tmp_path):
    with NatsCluster(tmp_path, size=1, binary=OLDEST_BINARY, name="old") as old:
        make_stream(old.urls, "OLD", replicas=1)
        res = run_tasks([task("create", stream="OLD", name="c", **RUNBOOK),
                         task("again", stream="OLD", name="c", **RUNBOOK),
                         task("pause", stream="OLD", name="c", pause_until=in_hours(1))], servers=old.urls)
        assert res.task("create")["changed"] is True
        assert res.task("again")["changed"] is False
        pause = res.task("pause")
        assert pause.get("failed") is True
        assert "2.11" in pause["msg"] and "2.10" in pause["msg"], pause["msg"]
        assert not live(old.urls, "OLD", "c").get("paused")


def test_absent(cluster, stream):
    run_tasks([task("create", stream=stream, name="c", **runbook(stream))], servers=cluster.urls)
    res = run_tasks([task("delete", stream=stream, name="c", state="absent"),
                     task("again", stream=stream, name="c", state="absent"),
                     task("no stream", stream=uid("NOPE"), name="c", state="absent")], servers=cluster.urls)
    assert res.rc == 0, res.stdout
    assert res.task("delete")["changed"] is True and res.task("delete")["operation"] == "deleted"
    assert res.task("again")["changed"] is False
    assert res.task("no stream")["changed"] is False
    assert live(cluster.urls, stream, "c") is None


def test_missing_stream_is_one_line_error(cluster):
    missing = uid("MISSING")
    res = run_tasks([task("create", stream=missing, name="c", **RUNBOOK)], servers=cluster.urls)
    t = res.task("create")
    assert t.get("failed") is True
    assert "stream %s not found" % missing in t["msg"] and "\n" not in t["msg"]


def test_bad_duration_and_backoff_mismatch_fail_clearly(cluster, stream):
    res = run_tasks([task("bad", stream=stream, name="c", ack_wait="sixty")], servers=cluster.urls)
    assert res.task("bad").get("failed") is True and "ack_wait" in res.task("bad")["msg"]
    res = run_tasks([task("bad", stream=stream, name="c", ack_wait="60s", backoff=["1s", "5s"], max_deliver=5)],
                    servers=cluster.urls)
    assert res.task("bad").get("failed") is True and "first backoff step" in res.task("bad")["msg"]
    assert live(cluster.urls, stream, "c") is None
