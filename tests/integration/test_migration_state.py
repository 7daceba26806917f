"""migration_state and the cut-over journal through ansible-playbook on the 3-node cluster: the derived step at
each point of a group's migration, the record written with the move, a missing record derived and written once,
readers from consumer state, and a wait that times out with the last state in one line."""

from __future__ import annotations

import asyncio

import nats
import pytest

from lab.ansible_run import run_tasks
from tests.support.jsapi import api


def pull_once(url, stream, durable, expires=12.0):
    """One pull request left waiting on the consumer (a service reading it), answered by nothing for a while."""
    async def go():
        nc = await nats.connect(url.split(","))
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
            try:
                await sub.fetch(1, timeout=expires)
            except nats.errors.TimeoutError:
                pass
        finally:
            await nc.close()
    return go()


@pytest.fixture
def plan(cluster, request):
    tag = request.node.name[-18:].replace("[", "_").replace("]", "").upper()
    prefix = tag.lower()
    legacy, new = "L_%s" % tag, "N_%s" % tag
    group = {"phase": 1, "stream": new, "subjects": ["%s.vendor.>" % prefix], "consumers": [{"name": "worker"}]}
    api(cluster.url, "STREAM.CREATE." + legacy,
        {"name": legacy, "subjects": ["%s.core.>" % prefix, "%s.vendor.>" % prefix], "num_replicas": 3})
    api(cluster.url, "CONSUMER.CREATE.%s.worker" % legacy, {"stream_name": legacy, "config": {
        "durable_name": "worker", "ack_policy": "explicit", "filter_subject": "%s.vendor.>" % prefix}})
    yield dict(legacy=legacy, new=new, group=group, prefix=prefix)
    for name in (legacy, new):
        api(cluster.url, "STREAM.DELETE." + name)


def state_task(p, **extra):
    return [{"name": "state", "athlete_ally.nats.migration_state": dict(
        legacy_stream=p["legacy"], groups=[p["group"]], **extra), "register": "out"}]


def step(cluster, p):
    res = run_tasks(state_task(p), servers=cluster.url)
    assert res.rc == 0, res.stdout
    return res.task("state")["migration"]["groups"]["1"]


def move(cluster, p, check=False, **extra):
    task = {"name": "move", "register": "out", "athlete_ally.nats.jetstream_subject_move": dict(
        subjects=p["group"]["subjects"], from_stream=p["legacy"], to_stream=p["new"], record="cutover", phase=1,
        **extra)}
    return run_tasks([task], servers=cluster.url, check=check)


def test_steps_of_a_group_and_the_record_written_with_the_move(cluster, plan):
    p = plan
    assert step(cluster, p)["step"] == "not_started"
    start = api(cluster.url, "STREAM.INFO." + p["legacy"])["state"]["last_seq"] + 1
    api(cluster.url, "STREAM.CREATE." + p["new"], {"name": p["new"], "num_replicas": 3, "sources": [
        {"name": p["legacy"], "filter_subject": p["group"]["subjects"][0], "opt_start_seq": start}]})
    api(cluster.url, "CONSUMER.CREATE.%s.worker" % p["new"], {"stream_name": p["new"], "config": {
        "durable_name": "worker", "ack_policy": "explicit"}})
    g = step(cluster, p)
    assert g["step"] == "shadow_ready", g
    assert g["sources"][0]["opt_start_seq"] == start and g["consumers"]["worker"]["new"]["reader"] is False

    # a pull request waiting on the new consumer is a reader: the step says the service is bound
    async def bound_while_pulling():
        pull = asyncio.ensure_future(pull_once(cluster.url, p["new"], "worker"))
        await asyncio.sleep(1.0)
        res = await asyncio.get_running_loop().run_in_executor(None, lambda: step(cluster, p))
        await pull
        return res
    assert asyncio.run(bound_while_pulling())["step"] == "bound"

    check = move(cluster, p, check=True)
    assert check.rc == 0 and check.task("move")["changed"] is True, check.stdout
    assert step(cluster, p)["step"] == "shadow_ready", "--check changed something"

    res = move(cluster, p)
    assert res.rc == 0, res.stdout
    out = res.task("move")
    meta_new = api(cluster.url, "STREAM.INFO." + p["new"])["config"]["metadata"]
    meta_legacy = api(cluster.url, "STREAM.INFO." + p["legacy"])["config"]["metadata"]
    assert meta_new["aa.migration.phase1.cutover_seq"] == str(out["cutover_seq"])
    assert meta_new["aa.migration.phase1.cutover_at"] == meta_legacy["aa.migration.phase1.cutover_at"]
    assert meta_legacy["aa.migration.phase"] == "1"
    g = step(cluster, p)
    assert g["step"] == "caught_up" and g["journal_missing"] == {} and g["placement"] == {
        p["group"]["subjects"][0]: "new"}, g

    again = move(cluster, p)
    assert again.rc == 0 and again.task("move")["changed"] is False, again.stdout

    # Phase 3's clock through the module, the phase as -e gives it (a string) and the retention as the inventory
    # may write it: the Day-14 decision is the module's, from the journaled cut-over time
    cut_at = int(meta_new["aa.migration.phase1.cutover_at"])
    res = run_tasks(state_task(p, phase="1", legacy_retention="14d"), servers=cluster.url)
    assert res.rc == 0, res.stdout
    out = res.task("state")
    assert out["group"]["phase"] == 1 and out["group"]["plan"]["moved"]
    assert out["group"]["plan"]["next_step"] == "verified"
    delete = out["migration"]["legacy_delete"]
    assert delete["ready"] and delete["cutover_at"] == cut_at and delete["allowed_at"] == cut_at + 14 * 86400
    assert delete["allowed"] is False and 0 < delete["seconds_left"] <= 14 * 86400, delete
    now = run_tasks(state_task(p, legacy_retention=0), servers=cluster.url).task("state")["migration"]
    assert now["legacy_delete"]["allowed"] is True and now["legacy_delete"]["seconds_left"] == 0
    wrong = run_tasks(state_task(p, phase=7), servers=cluster.url)
    assert wrong.rc != 0 and wrong.task("state")["msg"] == (
        "phase 7 is not a phase of groups (1): pass one of migration.groups[].phase")


def test_a_move_without_its_record_is_derived_written_once_with_a_warning(cluster, plan):
    p = plan
    api(cluster.url, "STREAM.CREATE." + p["new"], {"name": p["new"], "num_replicas": 3})
    # an older run moved the subjects by hand, and wrote nothing
    legacy_cfg = api(cluster.url, "STREAM.INFO." + p["legacy"])["config"]
    api(cluster.url, "STREAM.UPDATE." + p["legacy"], dict(legacy_cfg, subjects=["%s.core.>" % p["prefix"]]))
    api(cluster.url, "STREAM.UPDATE." + p["new"], dict(api(cluster.url, "STREAM.INFO." + p["new"])["config"],
                                                       subjects=p["group"]["subjects"]))
    g = step(cluster, p)
    assert g["step"] == "caught_up" and set(g["journal_missing"]) == {
        "aa.migration.phase1.cutover_seq", "aa.migration.phase1.cutover_at"}, g

    check = move(cluster, p, check=True)
    assert check.rc == 0 and check.task("move")["changed"] is True
    assert "aa.migration.phase1.cutover_seq" not in (
        api(cluster.url, "STREAM.INFO." + p["new"])["config"].get("metadata") or {})

    res = move(cluster, p)
    assert res.rc == 0, res.stdout
    out = res.task("move")
    assert out["changed"] is True and out["moved"] == []
    assert any("not in the journal" in w for w in out.get("warnings", [])), out
    assert step(cluster, p)["journal_missing"] == {}
    again = move(cluster, p)
    assert again.rc == 0 and again.task("move")["changed"] is False, again.stdout


def test_wait_for_a_reader_times_out_with_the_last_state_in_one_line(cluster, plan):
    p = plan
    api(cluster.url, "STREAM.CREATE." + p["new"], {"name": p["new"], "num_replicas": 3})
    api(cluster.url, "CONSUMER.CREATE.%s.worker" % p["new"], {"stream_name": p["new"], "config": {
        "durable_name": "worker", "ack_policy": "explicit"}})
    res = run_tasks(state_task(p, phase=1, wait_for="bound", timeout=2), servers=cluster.url)
    assert res.rc != 0
    out = res.task("state")
    assert "still not bound after 2.0s" in out["msg"] and "readers on new: {'worker': False}" in out["msg"], out
    assert "\n" not in out["msg"] and out["state"]["groups"]["1"]["step"] == "shadow_ready"


def test_drained_gives_up_early_on_a_backlog_nobody_processes(cluster, plan):
    """A rollback's wait: the backlog does not shrink for stall_timeout, so the wait ends long before its timeout;
    with fail_on_timeout=false it reports reached=false, the reason and the last state instead of failing."""
    p = plan
    api(cluster.url, "STREAM.CREATE." + p["new"], {"name": p["new"], "subjects": ["%s.extra.>" % p["prefix"]],
                                                   "num_replicas": 3})
    api(cluster.url, "CONSUMER.CREATE.%s.worker" % p["new"], {"stream_name": p["new"], "config": {
        "durable_name": "worker", "ack_policy": "explicit"}})

    async def publish():
        nc = await nats.connect(cluster.url.split(","))
        try:
            js = nc.jetstream()
            for i in range(3):
                await js.publish("%s.extra.x" % p["prefix"], b"%d" % i)
        finally:
            await nc.close()
    asyncio.run(publish())
    res = run_tasks(state_task(p, phase=1, wait_for="drained", timeout=120, stall_timeout=2, fail_on_timeout=False),
                    servers=cluster.url)
    assert res.rc == 0, res.stdout
    out = res.task("state")
    assert out["reached"] is False and "no progress for 2" in out["reason"] and "'worker': 3" in out["reason"], out
    assert out["migration"]["groups"]["1"]["behind"] == 3
    res = run_tasks(state_task(p, phase=1, wait_for="drained", timeout=120, stall_timeout=2), servers=cluster.url)
    assert res.rc != 0 and "the service is not processing them" in res.task("state")["msg"]


def test_a_group_with_a_subject_on_both_streams_is_refused(cluster, plan):
    p = plan
    # the server forbids overlap between streams, so "both" can only be seen through a stand-in: a second
    # group listing a subject the legacy stream owns while the new stream lists it too cannot be built; the
    # module must still refuse bad input in one line
    bad = dict(p, group={"phase": 1, "stream": p["new"], "subjects": []})
    res = run_tasks(state_task(bad), servers=cluster.url)
    assert res.rc != 0 and "groups[0] lacks subjects" in res.task("state")["msg"]


def test_info_waits_for_a_current_stream_and_names_what_is_missing(cluster, plan):
    p = plan

    def info(stream, timeout):
        task = {"name": "info", "register": "out", "athlete_ally.nats.jetstream_info": dict(
            stream=stream, wait_for="stream_current", timeout=timeout)}
        return run_tasks([task], servers=cluster.url)

    ok = info(p["legacy"], "10s")
    assert ok.rc == 0, ok.stdout
    out = ok.task("info")
    assert out["stream"]["summary"]["replicas_current"] == 3 and out["waited_seconds"] >= 0
    missing = info("NO_SUCH_STREAM", 1)
    assert missing.rc != 0
    msg = missing.task("info")["msg"]
    assert msg == "still not stream_current after 1.0s: stream NO_SUCH_STREAM does not exist", msg
