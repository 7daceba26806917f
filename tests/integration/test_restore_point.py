"""jetstream_restore_point through ansible-playbook on the 3-node cluster: a stream's configuration and its
consumers' kept in other streams' metadata before a delete, and the stream recreated from them (the rollback
after phase 3)."""

from __future__ import annotations

import json

from lab.ansible_run import run_tasks
from tests.support.jsapi import api, publish_acked as publish

KEY = "aa.migration.legacy_restore_point"


def task(state, stream, journals, name="rp"):
    return [{"name": name, "athlete_ally.nats.jetstream_restore_point":
             {"stream": stream, "journal_streams": journals, "state": state}, "register": "out"}]


def test_record_delete_restore_continues_the_sequence_and_leaves_owned_subjects(cluster, request):
    tag = request.node.name[-12:].upper()
    legacy, new_a, new_b = "RL_%s" % tag, "RA_%s" % tag, "RB_%s" % tag
    low = tag.lower()
    api(cluster.url, "STREAM.CREATE." + legacy, {"name": legacy, "subjects": ["%s.a.>" % low, "%s.keep.*" % low],
                                                 "num_replicas": 3, "max_age": 3600 * 10 ** 9,
                                                 "metadata": {"aa.migration.phase": "2"}})
    api(cluster.url, "CONSUMER.CREATE.%s.c1" % legacy, {"stream_name": legacy, "config": {
        "durable_name": "c1", "filter_subject": "%s.a.x" % low, "ack_policy": "explicit", "max_deliver": 5,
        "ack_wait": 15 * 10 ** 9, "deliver_policy": "all"}})
    api(cluster.url, "STREAM.CREATE." + new_a, {"name": new_a, "num_replicas": 3})
    publish(cluster.url, "%s.a.x" % low, 3)
    try:
        # Nothing to keep the record in: refused, nothing written.
        refused = run_tasks(task("recorded", legacy, ["NOPE_%s" % tag]), servers=cluster.url)
        assert refused.rc != 0 and "nowhere to be kept" in refused.task("rp")["msg"], refused.stdout[-2000:]

        check = run_tasks(task("recorded", legacy, [new_a, new_b]), servers=cluster.url, check=True)
        assert check.rc == 0 and check.task("rp")["changed"] is True, check.stdout[-2000:]
        assert KEY not in (api(cluster.url, "STREAM.INFO." + new_a)["config"].get("metadata") or {})

        rec = run_tasks(task("recorded", legacy, [new_a, new_b]), servers=cluster.url)
        assert rec.rc == 0 and rec.task("rp")["recorded"] == [new_a], rec.stdout[-2000:]
        kept = json.loads(api(cluster.url, "STREAM.INFO." + new_a)["config"]["metadata"][KEY])
        assert [c["durable_name"] for c in kept["consumers"]] == ["c1"]
        assert not any(k.startswith("_nats.") for k in kept["config"].get("metadata", {}))
        # A re-run (a run killed between the record and the delete) writes nothing.
        again = run_tasks(task("recorded", legacy, [new_a, new_b]), servers=cluster.url)
        assert again.rc == 0 and again.task("rp")["changed"] is False, again.stdout[-2000:]

        last_seq = api(cluster.url, "STREAM.INFO." + legacy)["state"]["last_seq"]
        api(cluster.url, "STREAM.DELETE." + legacy)
        # Meanwhile another stream took one of the recorded subjects: the recreated stream leaves it alone.
        api(cluster.url, "STREAM.UPDATE." + new_a, dict(api(cluster.url, "STREAM.INFO." + new_a)["config"],
                                                        subjects=["%s.a.>" % low]))

        check = run_tasks(task("restored", legacy, [new_b, new_a]), servers=cluster.url, check=True)
        assert check.rc == 0 and check.task("rp")["created_stream"] is True, check.stdout[-2000:]
        assert "error" in api(cluster.url, "STREAM.INFO." + legacy), "--check created nothing"

        res = run_tasks(task("restored", legacy, [new_b, new_a]), servers=cluster.url)
        out = res.task("rp")
        assert res.rc == 0 and out["created_consumers"] == ["c1"], res.stdout[-2000:]
        assert list(out["subjects_left_out"]) == ["%s.a.>" % low]
        info = api(cluster.url, "STREAM.INFO." + legacy)
        assert info["config"]["subjects"] == ["%s.keep.*" % low]
        assert info["config"]["max_age"] == 3600 * 10 ** 9
        assert info["config"]["metadata"]["aa.migration.phase"] == "2"
        assert last_seq == 3 and info["state"]["first_seq"] == last_seq + 1
        consumer = api(cluster.url, "CONSUMER.INFO.%s.c1" % legacy)
        assert consumer["config"]["filter_subject"] == "%s.a.x" % low and consumer["config"]["max_deliver"] == 5

        # A rollback killed between the stream and its consumers: the re-run creates what is missing.
        api(cluster.url, "CONSUMER.DELETE.%s.c1" % legacy)
        resumed = run_tasks(task("restored", legacy, [new_b, new_a]), servers=cluster.url)
        out = resumed.task("rp")
        assert resumed.rc == 0 and out["created_stream"] is False and out["created_consumers"] == ["c1"], out
        assert api(cluster.url, "STREAM.INFO." + legacy)["state"]["first_seq"] == last_seq + 1, "stream untouched"

        again = run_tasks(task("restored", legacy, [new_b, new_a]), servers=cluster.url)
        assert again.rc == 0 and again.task("rp")["changed"] is False, again.stdout[-2000:]

        # A missing stream without any record: one line, nothing created.
        api(cluster.url, "STREAM.DELETE." + legacy)
        none = run_tasks(task("restored", legacy, [new_b]), servers=cluster.url)
        assert none.rc != 0 and "holds its restore point" in none.task("rp")["msg"], none.stdout[-2000:]
        assert "error" in api(cluster.url, "STREAM.INFO." + legacy)
    finally:
        for name in (legacy, new_a, new_b):
            api(cluster.url, "STREAM.DELETE." + name)
