"""jetstream_subject_move through ansible-playbook on the 3-node cluster: the cut-over itself."""

from __future__ import annotations


import pytest

from lab.ansible_run import run_tasks
from tests.support.jsapi import api, publish_acked as publish


@pytest.fixture
def legacy_and_shadow(cluster, request):
    """A legacy stream with traffic, and a shadow stream sourcing its vendor subjects from the tail."""
    tag = request.node.name[-20:].replace("[", "_").replace("]", "").upper()
    legacy, shadow = "L_%s" % tag, "V_%s" % tag
    prefix = tag.lower()
    subjects = ["%s.core.>" % prefix, "%s.vendor.>" % prefix]
    api(cluster.url, "STREAM.CREATE." + legacy, {"name": legacy, "subjects": subjects, "num_replicas": 3})
    publish(cluster.url, "%s.vendor.a" % prefix, 3)
    start = api(cluster.url, "STREAM.INFO." + legacy)["state"]["last_seq"] + 1
    api(cluster.url, "STREAM.CREATE." + shadow, {"name": shadow, "num_replicas": 3, "sources": [
        {"name": legacy, "filter_subject": "%s.vendor.>" % prefix, "opt_start_seq": start}]})
    publish(cluster.url, "%s.vendor.b" % prefix, 2)
    yield legacy, shadow, prefix
    for name in (legacy, shadow):
        api(cluster.url, "STREAM.DELETE." + name)


def move_task(subjects, src, dst, **extra):
    args = dict(subjects=subjects, from_stream=src, to_stream=dst, **extra)
    return [{"name": "move", "athlete_ally.nats.jetstream_subject_move": args, "register": "out"}]


def test_cutover_moves_subjects_drops_caught_up_source_and_is_idempotent(cluster, legacy_and_shadow):
    legacy, shadow, prefix = legacy_and_shadow
    group = ["%s.vendor.>" % prefix]

    check = run_tasks(move_task(group, legacy, shadow), servers=cluster.url, check=True)
    assert check.rc == 0, check.stdout
    assert check.task("move")["changed"] is True
    assert api(cluster.url, "STREAM.INFO." + legacy)["config"]["subjects"] == ["%s.core.>" % prefix, group[0]]

    res = run_tasks(move_task(group, legacy, shadow), servers=cluster.url)
    assert res.rc == 0, res.stdout
    out = res.task("move")
    assert out["changed"] is True and out["moved"] == group
    assert out["gap_ms"] < 1000
    assert out["cutover_seq"] == 5
    legacy_info = api(cluster.url, "STREAM.INFO." + legacy)
    shadow_info = api(cluster.url, "STREAM.INFO." + shadow)
    assert legacy_info["config"]["subjects"] == ["%s.core.>" % prefix]
    assert shadow_info["config"]["subjects"] == group
    assert not shadow_info["config"].get("sources")
    assert shadow_info["state"]["messages"] == 2  # the two published after the shadow was made, no history

    publish(cluster.url, "%s.vendor.c" % prefix, 1)
    assert api(cluster.url, "STREAM.INFO." + shadow)["state"]["messages"] == 3
    assert api(cluster.url, "STREAM.INFO." + legacy)["state"]["last_seq"] == 5

    again = run_tasks(move_task(group, legacy, shadow), servers=cluster.url)
    assert again.rc == 0 and again.task("move")["changed"] is False, again.stdout


def test_converges_from_the_gap_and_rolls_back(cluster, legacy_and_shadow):
    legacy, shadow, prefix = legacy_and_shadow
    group = ["%s.vendor.>" % prefix]
    cfg = api(cluster.url, "STREAM.INFO." + legacy)["config"]
    api(cluster.url, "STREAM.UPDATE." + legacy, dict(cfg, subjects=["%s.core.>" % prefix]))  # interrupted cut-over

    res = run_tasks(move_task(group, legacy, shadow), servers=cluster.url)
    assert res.rc == 0, res.stdout
    assert api(cluster.url, "STREAM.INFO." + shadow)["config"]["subjects"] == group

    back = run_tasks(move_task(group, shadow, legacy, drop_sources=False), servers=cluster.url, diff=True)
    assert back.rc == 0, back.stdout
    assert sorted(api(cluster.url, "STREAM.INFO." + legacy)["config"]["subjects"]) == sorted(
        ["%s.core.>" % prefix, group[0]])
    # The shadow keeps no subject of its own: the module does not let the server's name-as-subject count.
    assert api(cluster.url, "STREAM.INFO." + shadow)["config"]["subjects"] in ([shadow], None, [])


def test_missing_stream_is_a_one_line_error_but_check_mode_reports_the_move(cluster):
    res = run_tasks(move_task(["nowhere.>"], "NO_SUCH_A", "NO_SUCH_B"), servers=cluster.url)
    assert res.rc != 0
    msg = res.task("move")["msg"]
    assert "NO_SUCH_A does not exist" in msg and "\n" not in msg

    check = run_tasks(move_task(["nowhere.>"], "NO_SUCH_A", "NO_SUCH_B"), servers=cluster.url, check=True)
    assert check.rc == 0 and check.task("move")["changed"] is True, check.stdout


def test_overlap_with_a_third_stream_is_refused_before_any_write(cluster, legacy_and_shadow):
    legacy, shadow, prefix = legacy_and_shadow
    third = "T_" + shadow
    cfg = api(cluster.url, "STREAM.INFO." + legacy)["config"]
    api(cluster.url, "STREAM.UPDATE." + legacy, dict(cfg, subjects=["%s.core.>" % prefix]))  # the gap
    created = api(cluster.url, "STREAM.CREATE." + third, {"name": third, "subjects": ["%s.vendor.x.*" % prefix],
                                                          "num_replicas": 1})
    assert "error" not in created, created
    try:
        before = api(cluster.url, "STREAM.INFO." + legacy)["config"]
        res = run_tasks(move_task(["%s.vendor.>" % prefix], legacy, shadow), servers=cluster.url)
        assert res.rc != 0
        msg = res.task("move")["msg"]
        assert third in msg and "nothing was changed" in msg, msg
        assert api(cluster.url, "STREAM.INFO." + legacy)["config"] == before
    finally:
        api(cluster.url, "STREAM.DELETE." + third)
