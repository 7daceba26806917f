"""jetstream_stream through ansible-playbook against real nats-server clusters."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import nats
import pytest

from lab.ansible_run import run_tasks
from lab.nats_cluster import OLDEST_BINARY, NatsCluster
from tests.support.jsapi import api

MOD = "athlete_ally.nats.jetstream_stream"
NS = 10 ** 9


def uniq(prefix):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:6].upper())


def create_raw(url, name, **config):
    """Set up a stream straight through the API (faster than a playbook run when creation is not under test)."""
    reply = api(url, "STREAM.CREATE." + name, dict(config, name=name))
    assert "error" not in reply, reply
    return reply["config"]


def raw_config(url, name):
    """The server's own STREAM.INFO config (None when the stream does not exist)."""
    reply = api(url, "STREAM.INFO." + name)
    return None if "error" in reply else reply["config"]


def raw_state(url, name):
    return api(url, "STREAM.INFO." + name)["state"]


def publish(url, subjects):
    async def go():
        nc = await nats.connect(url.split(","))
        try:
            for i, subject in enumerate(subjects):
                ack = json.loads((await nc.request(subject, b"m%d" % i, timeout=5)).data)
                assert "error" not in ack, ack
        finally:
            await nc.close()
    asyncio.run(go())


def task(title, /, **args):
    return {"name": title, MOD: args}


def failing(title, /, **args):
    return {"name": title, MOD: args, "ignore_errors": True}


def dlq_args(name, subject):
    """The runbook's AA_DLQ flags (nats stream add AA_DLQ ... --compression)."""
    return dict(name=name, subjects=[subject], storage="file", retention="limits", max_age="14d",
                max_msgs=-1, max_bytes=-1, replicas=3, discard="old", duplicate_window="2m", compression="s2")


def test_create_runbook_dlq_r3_then_idempotent_with_diff(cluster):
    name = uniq("DLQ")
    args = dlq_args(name, name.lower() + ".>")
    r = run_tasks([task("create", **args), task("again", **args)], servers=cluster.url, diff=True)
    assert r.rc == 0, r.stdout + r.stderr

    created, again = r.task("create"), r.task("again")
    assert created["changed"] is True
    assert again["changed"] is False, again["changed_fields"]
    assert again["changed_fields"] == []

    cfg = raw_config(cluster.url, name)
    assert cfg["num_replicas"] == 3
    assert cfg["max_age"] == 14 * 86400 * NS
    assert cfg["duplicate_window"] == 120 * NS
    assert cfg["compression"] == "s2"
    assert cfg["storage"] == "file" and cfg["retention"] == "limits" and cfg["discard"] == "old"
    assert cfg["subjects"] == [name.lower() + ".>"]

    # returns: live config, state, cluster with leader and two other peers
    assert created["config"]["max_age"] == 14 * 86400 * NS
    assert created["state"]["messages"] == 0
    assert set(created["state"]) == {"messages", "bytes", "first_seq", "last_seq", "first_ts", "last_ts",
                                     "consumer_count"}
    assert created["cluster"]["leader"]
    assert len(created["cluster"]["replicas"]) == 2
    assert set(created["cluster"]["replicas"][0]) == {"name", "current", "lag", "offline"}

    # --diff: before empty, after the canonical config with humanized durations
    assert created["diff"]["before"] == {}
    assert created["diff"]["after"]["max_age"] in ("14d", "2w")
    assert created["diff"]["after"]["compression"] == "s2"
    # server defaults (max_msgs -1, file, limits, old, 2m window) are not differences
    assert set(created["diff"]["after"]) == {"name", "subjects", "max_age", "num_replicas", "compression"}
    assert again["diff"]["before"] == again["diff"]["after"]


def test_check_mode_writes_nothing(cluster):
    name, other = uniq("CHK"), uniq("CHKNEW")
    create_raw(cluster.url, name, subjects=[name.lower()], max_age=48 * 3600 * NS, num_replicas=3)
    before = raw_config(cluster.url, name)

    r = run_tasks([task("update", name=name, max_age="24h", description="changed", metadata={"k": "v"}),
                   task("create", name=other, subjects=[other.lower()]),
                   task("delete", name=name, state="absent")],
                  servers=cluster.url, check=True, diff=True)
    assert r.rc == 0, r.stdout
    upd = r.task("update")
    assert upd["changed"] is True
    assert upd["changed_fields"] == ["description", "max_age", "metadata"]
    assert upd["diff"]["before"]["max_age"] == "2d" and upd["diff"]["after"]["max_age"] == "1d"
    assert r.task("create")["changed"] is True
    assert r.task("delete")["changed"] is True

    assert raw_config(cluster.url, name) == before
    assert raw_config(cluster.url, other) is None


def test_mutable_update_and_omitted_options_keep_live_values(cluster):
    name = uniq("UPD")
    r = run_tasks([task("create", name=name, subjects=[name.lower() + ".*"], max_age="48h", compression="s2",
                        max_msgs_per_subject=10, replicas=3),
                   task("update", name=name, max_age="72h"),
                   task("again", name=name, max_age=3 * 86400)],
                  servers=cluster.url)
    assert r.rc == 0, r.stdout
    assert r.task("update")["changed"] is True
    assert r.task("update")["changed_fields"] == ["max_age"]
    assert r.task("again")["changed"] is False  # 72h == 259200 seconds, compared in ns

    cfg = raw_config(cluster.url, name)
    assert cfg["max_age"] == 72 * 3600 * NS
    assert cfg["compression"] == "s2"
    assert cfg["max_msgs_per_subject"] == 10
    assert cfg["num_replicas"] == 3
    assert cfg["subjects"] == [name.lower() + ".*"]


def test_immutable_changes_refused_before_write(cluster):
    name = uniq("IMM")
    mirror = name + "_MIRROR"
    create_raw(cluster.url, name, subjects=[name.lower()], deny_delete=True, max_consumers=5)
    create_raw(cluster.url, mirror, mirror={"name": name})
    before, mirror_before = raw_config(cluster.url, name), raw_config(cluster.url, mirror)

    r = run_tasks([failing("storage", name=name, storage="memory", max_age="1h"),
                   failing("retention", name=name, retention="workqueue"),
                   failing("deny_delete", name=name, deny_delete=False),
                   failing("mirror", name=mirror, mirror={"name": name, "opt_start_seq": 5}),
                   task("same_mirror", name=mirror, mirror={"name": name})],
                  servers=cluster.url)
    storage, retention, deny = r.task("storage"), r.task("retention"), r.task("deny_delete")
    for res in (storage, retention, deny):
        assert res.get("failed") is True
        assert "\n" not in res["msg"]
        assert name in res["msg"]
    assert "storage: live 'file', asked 'memory'" in storage["msg"]
    assert "retention: live 'limits', asked 'workqueue'" in retention["msg"]
    assert "deny_delete: live True, asked False" in deny["msg"]
    assert r.task("mirror").get("failed") is True
    assert "mirror: live {'name': '%s'}, asked {'name': '%s', 'opt_start_seq': 5}" % (name, name) \
        in r.task("mirror")["msg"]
    assert r.task("same_mirror")["changed"] is False
    assert raw_config(cluster.url, name) == before  # the mutable max_age of the same task was not written
    assert raw_config(cluster.url, mirror) == mirror_before


def test_subject_overlap_refused_naming_other_stream(cluster):
    legacy, hot = uniq("LEGACY"), uniq("AA_VENDOR_HOT")
    prefix = "vendor%s" % uuid.uuid4().hex[:4]
    create_raw(cluster.url, legacy, subjects=["athlete%s.>" % prefix, prefix + ".>"])
    r = run_tasks([failing("hot", name=hot, subjects=[prefix + ".>"]),
                   failing("narrow", name=hot, subjects=[prefix + ".oura.*"]),
                   task("disjoint", name=hot, subjects=["other" + prefix + ".>"])],
                  servers=cluster.url)
    hot_res, narrow = r.task("hot"), r.task("narrow")
    assert hot_res.get("failed") is True
    assert legacy in hot_res["msg"]
    assert "%s.> overlaps %s.>" % (prefix, prefix) in hot_res["msg"]
    assert "athlete" not in hot_res["msg"]
    assert narrow.get("failed") is True
    assert "%s.oura.* overlaps %s.>" % (prefix, prefix) in narrow["msg"]
    assert r.task("disjoint")["changed"] is True
    assert raw_config(cluster.url, hot)["subjects"] == ["other" + prefix + ".>"]


def test_sourced_shadow_stream_without_subjects(cluster):
    origin, shadow = uniq("ORIGIN"), uniq("SHADOW")
    subj = origin.lower()
    create_raw(cluster.url, origin, subjects=[subj + ".>"])
    publish(cluster.url, ["%s.%d" % (subj, i) for i in range(5)])

    shadow_args = dict(name=shadow, replicas=3, sources=[{"name": origin, "opt_start_seq": 3,
                                                          "filter_subject": subj + ".>"}])
    r = run_tasks([task("shadow", **shadow_args), task("again", **shadow_args)], servers=cluster.url)
    assert r.rc == 0, r.stdout
    assert r.task("shadow")["changed"] is True
    assert r.task("again")["changed"] is False, r.task("again")["changed_fields"]
    assert not r.task("shadow").get("warnings")

    cfg = raw_config(cluster.url, shadow)
    assert not cfg.get("subjects")
    assert cfg["sources"][0]["name"] == origin and cfg["sources"][0]["opt_start_seq"] == 3
    deadline = time.time() + 10
    while raw_state(cluster.url, shadow)["messages"] < 3 and time.time() < deadline:
        time.sleep(0.2)
    assert raw_state(cluster.url, shadow)["messages"] == 3


def test_empty_subjects_on_plain_stream_is_its_name(cluster):
    name = uniq("EMPTY")
    r = run_tasks([task("create", name=name, subjects=[]), task("again", name=name, subjects=[])],
                  servers=cluster.url)
    assert r.rc == 0, r.stdout
    assert r.task("create")["changed"] is True
    assert r.task("again")["changed"] is False
    for res in (r.task("create"), r.task("again")):
        assert any("own name" in w and name in w for w in res.get("warnings", [])), res.get("warnings")
    assert raw_config(cluster.url, name)["subjects"] == [name]


def test_absent_is_guarded_when_stream_holds_messages(cluster):
    name = uniq("DEL")
    create_raw(cluster.url, name, subjects=[name.lower()])
    publish(cluster.url, [name.lower()] * 2)

    r = run_tasks([failing("bare", name=name, state="absent"),
                   failing("only_if_empty", name=name, state="absent", only_if_empty=True),
                   task("force", name=name, state="absent", force=True),
                   task("gone", name=name, state="absent", only_if_empty=True)],
                  servers=cluster.url)
    bare, empty_only = r.task("bare"), r.task("only_if_empty")
    assert bare.get("failed") is True and "force: true" in bare["msg"] and "only_if_empty" in bare["msg"]
    assert empty_only.get("failed") is True and "2 messages" in empty_only["msg"]
    assert r.task("force")["changed"] is True
    assert r.task("force")["deleted_messages"] == 2
    assert r.task("gone")["changed"] is False
    assert raw_config(cluster.url, name) is None


def test_purge_by_subject_then_whole(cluster):
    name = uniq("PURGE")
    s = name.lower()
    create_raw(cluster.url, name, subjects=[s + ".*"])
    publish(cluster.url, [s + ".x"] * 3 + [s + ".y"] * 2)

    r = run_tasks([dict(task("check", name=name, purge=True, purge_subject=s + ".x"), check_mode=True),
                   dict(task("check_whole", name=name, purge=True), check_mode=True),
                   task("by_subject", name=name, purge=True, purge_subject=s + ".x"),
                   task("by_subject_again", name=name, purge=True, purge_subject=s + ".x"),
                   task("keep_one", name=name, purge=True, purge_keep=1),
                   task("whole", name=name, purge=True),
                   task("whole_again", name=name, purge=True)],
                  servers=cluster.url)
    assert r.rc == 0, r.stdout
    assert (r.task("check")["changed"], r.task("check")["purged"]) == (True, 3)  # estimated, nothing removed
    assert (r.task("check_whole")["changed"], r.task("check_whole")["purged"]) == (True, 5)
    assert (r.task("by_subject")["changed"], r.task("by_subject")["purged"]) == (True, 3)
    assert r.task("by_subject_again")["changed"] is False
    assert (r.task("keep_one")["changed"], r.task("keep_one")["purged"]) == (True, 1)
    assert (r.task("whole")["changed"], r.task("whole")["purged"]) == (True, 1)
    assert r.task("whole_again")["changed"] is False
    assert raw_state(cluster.url, name)["messages"] == 0


def test_metadata_merge_keeps_other_keys_and_hides_reserved(cluster):
    name = uniq("META")
    r = run_tasks([task("create", name=name, subjects=[name.lower()], metadata={"owner": "platform"}),
                   task("merge", name=name, metadata={"phase": "1"}, metadata_merge=True),
                   task("merge_again", name=name, metadata={"phase": "1"}, metadata_merge=True),
                   task("replace", name=name, metadata={"phase": "2"})],
                  servers=cluster.url, diff=True)
    assert r.rc == 0, r.stdout
    merge = r.task("merge")
    assert merge["changed"] is True and merge["changed_fields"] == ["metadata"]
    assert merge["diff"]["after"]["metadata"] == {"owner": "platform", "phase": "1"}
    assert not any(k.startswith("_nats.") for k in merge["diff"]["before"]["metadata"])
    assert r.task("merge_again")["changed"] is False

    meta = raw_config(cluster.url, name)["metadata"]
    assert meta.get("phase") == "2" and "owner" not in meta
    assert any(k.startswith("_nats.") for k in meta)  # 2.11+ reserved keys survived the updates


def test_bad_input_fails_with_one_line(cluster):
    name = uniq("BAD")
    r = run_tasks([failing("replicas", name=name, subjects=[name.lower()], replicas=7),
                   failing("duration", name=name, subjects=[name.lower()], max_age="14 fortnights"),
                   failing("purge_alone", name=name, subjects=[name.lower()], purge_subject="x"),
                   failing("server_refuses", name=name, subjects=[name.lower() + ".>"],
                           republish={"dest": name.lower() + ".again"})],
                  servers=cluster.url)
    for res, text in ((r.task("replicas"), "replicas must be between 1 and 5"),
                      (r.task("duration"), "max_age: cannot read '14 fortnights'"),
                      (r.task("purge_alone"), "set purge: true"),
                      (r.task("server_refuses"), "stream %s: the server refused to create it: " % name)):
        assert res.get("failed") is True
        assert text in res["msg"] and "\n" not in res["msg"]
    assert raw_config(cluster.url, name) is None


@pytest.mark.skipif(OLDEST_BINARY is None, reason="nats-server 2.10 not installed (make setup)")
def test_idempotent_on_nats_server_2_10(tmp_path):
    with NatsCluster(tmp_path, size=1, binary=OLDEST_BINARY, name="old") as old:
        dlq = dlq_args("AA_DLQ", "dlq.>")
        dlq["replicas"] = 1
        tasks = [
            task("dlq", **dlq),
            task("plain", name="PLAIN", subjects=[], metadata={"owner": "platform"}),
            task("shadow", name="SHADOW", sources=[{"name": "AA_DLQ", "opt_start_seq": 2}]),
            task("short", name="SHORT", subjects=["short.>"], max_age="1m",
                 consumer_limits={"inactive_threshold": "5m", "max_ack_pending": 100}),
        ]
        again = [dict(t, name="again " + t["name"]) for t in tasks]
        r = run_tasks(tasks + again + [failing("ttl", name="AA_DLQ", allow_msg_ttl=True)], servers=old.url)
        first, second = r.tasks[:len(tasks)], r.tasks[len(tasks):2 * len(tasks)]
        assert all(t["changed"] and not t.get("failed") for t in first), r.stdout
        assert [(t["_name"], t["changed"], t["changed_fields"]) for t in second] == \
            [(t["_name"], False, []) for t in second]
        assert raw_config(old.url, "AA_DLQ")["max_age"] == 14 * 86400 * NS
        assert raw_config(old.url, "PLAIN")["subjects"] == ["PLAIN"]
        assert "needs nats-server 2.11.0" in r.task("ttl")["msg"]
