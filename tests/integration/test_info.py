"""jetstream_info through ansible-playbook on a 3-node cluster that has a system account."""

from __future__ import annotations

import pytest

from lab.ansible_run import run_tasks
from lab.nats_cluster import NatsCluster, accounts_config
from tests.support.jsapi import api

SYS_PASSWORD = "sys-Pw-4b1d"
APP_PASSWORD = "app-Pw-77c2"
ACCOUNTS = accounts_config(SYS_PASSWORD, APP_PASSWORD)
APP = dict(user="app", password=APP_PASSWORD)
SYSTEM = dict(system_user="sys", system_password=SYS_PASSWORD)


@pytest.fixture(scope="module")
def syscluster(tmp_path_factory):
    c = NatsCluster(tmp_path_factory.mktemp("syscluster"), size=3, extra=ACCOUNTS, name="s")
    c.start(**APP)
    try:
        yield c
    finally:
        c.stop()


def info_task(name="info", register="out", **args):
    return {"name": name, "athlete_ally.nats.jetstream_info": args, "register": register}


def test_cluster_peers_all_current(syscluster):
    task = info_task(gather=["cluster"], **SYSTEM)
    # The runbook's "all 3 nodes UP" check, as a playbook would write it.
    task.update({"until": "out.cluster.all_current", "retries": 20, "delay": 1})
    res = run_tasks([task], servers=syscluster.urls, defaults=APP)
    assert res.rc == 0, res.stdout[-3000:]
    out = res.task("info")
    cl = out["cluster"]
    assert out["changed"] is False
    assert cl["name"] == "s"
    assert cl["cluster_size"] == 3 and cl["servers_responded"] == 3
    assert cl["peers_current"] == 3 and cl["all_current"] is True
    assert sorted(p["name"] for p in cl["peers"]) == ["s1", "s2", "s3"]
    assert [p["name"] for p in cl["peers"] if p["leader"]] == [cl["leader"]]
    for peer in cl["peers"]:
        assert peer["current"] and not peer["offline"] and peer["jetstream"] and peer["responded"]
        assert peer["version"] == "2.15.1"
        assert peer["lag"] == 0
    assert "account" not in out and "streams" not in out
    assert SYS_PASSWORD not in res.stdout


def test_cluster_without_system_account_says_which_option_to_set(syscluster):
    res = run_tasks([info_task(gather=["cluster"], request_timeout=1)], servers=syscluster.urls, defaults=APP)
    assert res.rc != 0
    msg = res.task("info")["msg"]
    assert "\n" not in msg
    assert "system_user" in msg and "system_creds_file" in msg and "$SYS.REQ.SERVER.PING.JSZ" in msg


def test_cluster_bad_system_password_is_one_line(syscluster):
    res = run_tasks([info_task(gather=["cluster"], system_user="sys", system_password="wrong-one")],
                    servers=syscluster.urls, defaults=APP)
    assert res.rc != 0
    msg = res.task("info")["msg"]
    assert "\n" not in msg and "system-account connection failed" in msg and "credentials" in msg


def test_cluster_falls_back_to_main_connection(syscluster):
    """Without system_* options the main connection is used; a system user there works."""
    task = info_task(gather=["cluster"])
    task.update({"until": "out.cluster.all_current", "retries": 20, "delay": 1})
    res = run_tasks([task], servers=syscluster.urls, defaults=dict(user="sys", password=SYS_PASSWORD))
    assert res.rc == 0, res.stdout[-3000:]
    assert len(res.task("info")["cluster"]["peers"]) == 3


def test_account_streams_stream_consumer_and_missing_ones(syscluster):
    url = syscluster.url
    api(url, "STREAM.CREATE.INFO_DLQ", {"name": "INFO_DLQ", "subjects": ["infodlq.>"], "num_replicas": 3,
                                        "max_age": 14 * 86400 * 10 ** 9, "storage": "file"}, **APP)
    api(url, "CONSUMER.CREATE.INFO_DLQ.reader", {"stream_name": "INFO_DLQ", "config": {
        "durable_name": "reader", "ack_policy": "explicit", "filter_subject": "infodlq.>"}}, **APP)
    try:
        tasks = [
            {"name": "pub", "athlete_ally.nats.jetstream_publish": {
                "subject": "infodlq.test.phase0", "payload_json": {"test": "dlq-verification", "phase": 0}}},
            info_task(stream="INFO_DLQ", consumer="reader"),
            info_task(name="missing stream", register="ms", gather=["stream"], stream="NOPE"),
            info_task(name="missing consumer", register="mc", gather=["consumer"], stream="INFO_DLQ",
                      consumer="nope"),
            info_task(name="consumer of missing stream", register="mcs", gather=["consumer"], stream="NOPE",
                      consumer="nope"),
            {"name": "runbook checklist", "ansible.builtin.assert": {"that": [
                "out.stream.exists",
                "out.stream.config.subjects == ['infodlq.>']",
                "out.stream.config.max_age == 1209600000000000",
                "out.stream.config.num_replicas == 3",
                "out.stream.config.storage == 'file'",
                "out.stream.state.messages == 1",
                "out.consumer.num_pending == 1",
                "not ms.stream.exists",
                "not mc.consumer.exists",
                "not mcs.consumer.exists",
            ]}},
        ]
        res = run_tasks(tasks, servers=syscluster.urls, defaults=APP)
        assert res.rc == 0, res.stdout[-4000:]
        out = res.task("info")
        assert out["changed"] is False
        assert out["gathered"] == ["account", "streams", "stream", "consumer"]
        assert out["account"]["streams"] >= 1 and "limits" in out["account"] and "type" not in out["account"]
        summary = next(s for s in out["streams"] if s["name"] == "INFO_DLQ")
        assert summary["subjects"] == ["infodlq.>"] and summary["messages"] == 1
        assert summary["replicas"] == 3 and summary["leader"] in ("s1", "s2", "s3")
        assert summary["consumers"] == 1 and summary["bytes"] > 0
        assert out["stream"]["summary"] == summary
        assert out["consumer"]["exists"] and out["consumer"]["config"]["durable_name"] == "reader"
        assert res.task("missing stream")["stream"] == {"exists": False, "name": "NOPE"}
        assert res.task("missing consumer")["consumer"] == {"exists": False, "stream": "INFO_DLQ", "name": "nope"}
    finally:
        api(url, "STREAM.DELETE.INFO_DLQ", **APP)


def test_check_mode_reads_and_reports_unchanged(syscluster):
    res = run_tasks([info_task(gather=["account", "cluster"], **SYSTEM)], servers=syscluster.urls, defaults=APP,
                    check=True)
    assert res.rc == 0, res.stdout[-3000:]
    out = res.task("info")
    assert out["changed"] is False and "account" in out and out["cluster"]["servers_responded"] == 3


def test_gather_stream_without_name_fails_clearly(syscluster):
    res = run_tasks([info_task(gather=["stream"])], servers=syscluster.urls, defaults=APP)
    assert res.rc != 0
    assert "needs the 'stream' option" in res.task("info")["msg"]


def test_stream_list_and_consumer_list_in_one_run(syscluster):
    """What validate.yml reads: every stream and consumer of a topology in one module run, waiting on all of them;
    a missing stream or a backlog over its bound fails with one line naming just what does not hold."""
    url = syscluster.url
    for name in ("LIST_A", "LIST_B"):
        config = {"name": name, "subjects": ["%s.>" % name.lower()], "num_replicas": 3, "storage": "file"}
        api(url, "STREAM.CREATE.%s" % name, config, **APP)
        api(url, "CONSUMER.CREATE.%s.c" % name, {"stream_name": name, "config": {
            "durable_name": "c", "ack_policy": "explicit"}}, **APP)
    pub = {"name": "pub", "athlete_ally.nats.jetstream_publish": {"subject": "list_b.x", "payload_json": {"n": 1}}}
    consumers = [{"stream": "LIST_A", "name": "c"}, {"stream": "LIST_B", "name": "c", "max_pending": 2}]
    try:
        res = run_tasks([pub, info_task(stream_list=["LIST_A", "LIST_B"], consumer_list=consumers, max_pending=1,
                                        wait_for=["streams_current", "consumers_pending_below"])],
                        servers=syscluster.urls, defaults=APP)
        assert res.rc == 0, res.stdout[-3000:]
        out = res.task("info")
        assert out["gathered"] == ["stream_list", "consumer_list"] and out["changed"] is False
        assert sorted(out["stream_list"]) == ["LIST_A", "LIST_B"]
        assert all(s["exists"] and s["summary"]["replicas_current"] == 3 for s in out["stream_list"].values())
        assert out["stream_list"]["LIST_B"]["config"]["subjects"] == ["list_b.>"]
        assert out["consumer_list"]["LIST_A/c"]["max_pending"] == 1  # the module's bound, none of its own
        assert out["consumer_list"]["LIST_B/c"]["num_pending"] == 1
        assert out["consumer_list"]["LIST_B/c"]["max_pending"] == 2

        res = run_tasks([info_task(stream_list=["LIST_A", "LIST_NOPE"], consumer_list=consumers, max_pending=1,
                                   wait_for=["streams_current", "consumers_pending_below"], timeout=2)],
                        servers=syscluster.urls, defaults=APP)
        assert res.rc != 0
        msg = res.task("info")["msg"]
        assert "\n" not in msg and "LIST_A:" not in msg, msg
        assert msg.startswith("still not streams_current and consumers_pending_below after 2"), msg
        assert "stream LIST_NOPE does not exist" in msg, msg
        # LIST_B/c holds 1 < 2 (its own bound); LIST_A/c holds 0 < 1: no consumer is named
        assert "consumer" not in msg.split(": ", 1)[1], msg
    finally:
        for name in ("LIST_A", "LIST_B"):
            api(url, "STREAM.DELETE.%s" % name, **APP)


def test_stream_list_without_names_fails_clearly(syscluster):
    res = run_tasks([info_task(gather=["stream_list"])], servers=syscluster.urls, defaults=APP)
    assert res.rc != 0
    assert "gather stream_list needs the 'stream_list' option" in res.task("info")["msg"]


def test_stopped_node_is_reported_not_current(syscluster):
    """Last in this file: stops one node. The runbook's "all 3 nodes UP" check must then fail."""
    syscluster.stop_node(2)
    task = info_task(gather=["cluster"], request_timeout=2, **SYSTEM)
    # Wait until a leader among the two live nodes has noticed that s3 is gone.
    task.update({"until": "out.cluster.leader is not none and not (out.cluster.peers | selectattr('name', "
                          "'equalto', 's3') | first).current", "retries": 30, "delay": 1})
    res = run_tasks([task], servers=syscluster.urls[:2], defaults=APP)
    assert res.rc == 0, res.stdout[-3000:]
    cl = res.task("info")["cluster"]
    assert cl["servers_responded"] == 2 and cl["all_current"] is False and cl["peers_current"] == 2
    s3 = next(p for p in cl["peers"] if p["name"] == "s3")
    assert s3["responded"] is False and s3["version"] is None and not s3["current"]
    assert cl["leader"] in ("s1", "s2")
