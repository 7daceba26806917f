"""migration_plan through ansible-playbook: the plan against the streams of a real 3-node cluster (an unrelated stream
on a subject of the plan, a group subject the legacy stream lacks, a group stream name taken, a valid plan with
group 1 moved), and the three inventories' plans, rendered by Ansible, passing (production but for the staging run it
waits for) with one topology digest."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from lab.ansible_run import REPO, run_playbook_file, run_tasks
from tests.support.jsapi import api
from tests.support.inventory import rendered

sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.athlete_ally.nats.plugins.module_utils import plan as plan_utils  # noqa: E402

NAMES = ("ATHLETE_ALLY_EVENTS", "AA_VENDOR_HOT", "AA_CORE_HOT", "AA_DLQ")
SUBJECT_ROOTS = re.compile(r"(?<![\w.-])(athlete-ally|vendor|sleep|dlq)\.")


def renamed(value, names, prefix):
    """The staging plan with this test's stream names and its subjects under ``prefix`` (every key alike, so the
    plan stays consistent: consumer filters, verification subjects, modes)."""
    if isinstance(value, dict):
        return {k: renamed(x, names, prefix) for k, x in value.items()}
    if isinstance(value, list):
        return [renamed(x, names, prefix) for x in value]
    if isinstance(value, str):
        for old, new in zip(NAMES, names):
            value = re.sub(r"\b%s\b" % old, new, value)
        return SUBJECT_ROOTS.sub(lambda mt: "%s.%s." % (prefix, mt.group(1)), value)
    return value


@pytest.fixture
def plan(cluster, request):
    tag = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[-14:].upper()
    names = ["L_" + tag, "V_" + tag, "C_" + tag, "D_" + tag]
    staging = rendered("staging")
    p = dict(plan=renamed(staging, names, tag.lower()), legacy=names[0], vendor=names[1], core=names[2],
             dlq=names[3], prefix=tag.lower(), made=[])
    yield p
    for name in p["made"]:
        api(cluster.url, "STREAM.DELETE." + name)


def create(cluster, p, name, subjects=(), **config):
    reply = api(cluster.url, "STREAM.CREATE." + name, dict(name=name, subjects=list(subjects), num_replicas=3,
                                                           **config))
    assert "error" not in reply, reply
    p["made"].append(name)


def legacy_subjects(p):
    return p["plan"]["legacy"]["subjects"]


def check(cluster, p, **extra):
    task = {"name": "plan", "register": "out", "athlete_ally.nats.migration_plan": dict(plan=p["plan"], **extra)}
    res = run_tasks([task], servers=cluster.url)
    return res, res.task("plan")


def refused(cluster, p):
    res, out = check(cluster, p)
    assert res.rc != 0 and out.get("failed"), res.stdout[-3000:]
    assert out["msg"] == "\n".join(out["errors"]) and re.fullmatch(r"[0-9a-f]{64}", out["digest"])
    return out["errors"]


def test_a_fresh_cluster_with_the_legacy_stream_passes_and_says_where_each_subject_is(cluster, plan):
    p = plan
    create(cluster, p, p["legacy"], legacy_subjects(p))
    for check_mode in (False, True):
        res = run_tasks([{"name": "plan", "register": "out", "athlete_ally.nats.migration_plan": {"plan": p["plan"]}}],
                        servers=cluster.url, check=check_mode)
        out = res.task("plan")
        assert res.rc == 0 and out["errors"] == [] and out["changed"] is False, res.stdout[-3000:]
        assert [g["placement"] for g in out["groups"]] == [
            {s: "legacy" for s in g["subjects"]} for g in p["plan"]["groups"]]


def test_an_unrelated_stream_on_the_dlq_subjects_is_refused(cluster, plan):
    p = plan
    create(cluster, p, p["legacy"], legacy_subjects(p))
    create(cluster, p, "OTHER_" + p["dlq"], ["%s.dlq.orders" % p["prefix"]])
    assert refused(cluster, p) == [
        "migration.dlq.subjects: '%s.dlq.>' overlaps '%s.dlq.orders' of stream OTHER_%s, which is not part of the "
        "migration; move that subject off OTHER_%s or out of the plan" % (p["prefix"], p["prefix"], p["dlq"], p["dlq"])]


def test_a_group_subject_the_legacy_stream_lacks_and_an_unrelated_stream_holds(cluster, plan):
    p = plan
    sleep = "%s.sleep.*" % p["prefix"]
    create(cluster, p, p["legacy"], [s for s in legacy_subjects(p) if s != sleep])
    errors = refused(cluster, p)
    assert len(errors) == 1 and errors[0].startswith("migration.groups[1].subjects: %r is held neither by the legacy "
                                                     "stream %s" % (sleep, p["legacy"])), errors
    # the server lets another stream take the subject the legacy stream lacks: the plan names it too
    create(cluster, p, "SLEEP_" + p["legacy"], ["%s.sleep.raw" % p["prefix"]])
    errors = refused(cluster, p)
    assert len(errors) == 2 and ("%r overlaps '%s.sleep.raw' of stream SLEEP_%s" % (sleep, p["prefix"], p["legacy"])
                                 in errors[1]), errors


def test_a_group_stream_name_taken_by_an_unrelated_stream_is_refused(cluster, plan):
    p = plan
    create(cluster, p, p["legacy"], legacy_subjects(p))
    create(cluster, p, p["core"], ["%s.billing.>" % p["prefix"]])
    errors = refused(cluster, p)
    assert len(errors) == 1 and errors[0].startswith(
        "migration.groups[1].stream: stream %s exists at the cluster and is not this group's" % p["core"]), errors


def test_a_valid_plan_mid_migration_group_1_moved(cluster, plan):
    p = plan
    group = p["plan"]["groups"][0]
    create(cluster, p, p["legacy"], legacy_subjects(p))
    create(cluster, p, p["vendor"], sources=[{"name": p["legacy"], "filter_subject": s} for s in group["subjects"]])
    res, out = check(cluster, p)
    assert res.rc == 0 and out["groups"][0]["placement"] == {s: "legacy" for s in group["subjects"]}, res.stdout
    moved = run_tasks([{"name": "move", "athlete_ally.nats.jetstream_subject_move": dict(
        subjects=group["subjects"], from_stream=p["legacy"], to_stream=p["vendor"], record="cutover", phase=1)}],
        servers=cluster.url)
    assert moved.rc == 0, moved.stdout[-3000:]
    res, out = check(cluster, p)
    assert res.rc == 0 and out["errors"] == [], res.stdout[-3000:]
    assert out["groups"][0]["placement"] == {s: "own" for s in group["subjects"]}
    assert out["groups"][1]["placement"] == {s: "legacy" for s in p["plan"]["groups"][1]["subjects"]}


def test_the_plan_alone_needs_no_cluster(plan):
    p = plan
    res = run_tasks([{"name": "plan", "register": "out", "athlete_ally.nats.migration_plan": dict(
        plan=dict(p["plan"], drain_timeout="soon"), live=False)}], servers="nats://127.0.0.1:9")
    out = res.task("plan")
    assert res.rc != 0 and out["errors"] == [
        "migration.drain_timeout: cannot read 'soon' as a duration; use e.g. '48h', '14d', '2m', '500ms' or seconds"]


def inventory_plan(inventory):
    # staging and production name their topology from inventories/migration_topology.yml: Ansible renders the plan
    return rendered(inventory)


@pytest.mark.parametrize("inventory", ["lab", "staging", "production"])
def test_each_inventory_plan_rendered_by_ansible_passes(inventory):
    """Passes, or (production, until a staging run's digest is filled in) fails on that one line alone; the three
    inventories describe one topology (tests/unit/test_plan.py checks the line's text)."""
    raw = inventory_plan(inventory)
    waits = raw.get("require_staging_validation") is True and \
        (raw.get("staging_validated") or {}).get("topology_digest") != plan_utils.topology_digest(raw)
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
        {"name": "plan", "register": "out",
         "athlete_ally.nats.migration_plan": {"plan": "{{ migration }}", "live": False}}]}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "play.yml"
        path.write_text(yaml.safe_dump(play))
        res = run_playbook_file(path, ["-i", str(REPO / "inventories" / inventory)])
    out = res.task("plan")
    if waits:
        assert res.rc != 0 and len(out["errors"]) == 1, res.stdout[-3000:]
        assert out["errors"][0].startswith("migration.staging_validated.topology_digest: "), out["errors"]
    else:
        assert res.rc == 0 and out["errors"] == [], res.stdout[-3000:]
    assert [g["phase"] for g in out["groups"]] == sorted(g["phase"] for g in out["groups"])
    assert out["topology_digest"] == plan_utils.topology_digest(inventory_plan("staging"))


def test_a_consumer_with_filter_subjects_is_accepted_and_applied_by_the_phase(cluster, plan):
    """What plan.py accepts is what the phase creates: a consumer reading two subjects (filter_subjects) passes the
    plan check, and roles/migration/tasks/shadow.yml creates it with both, again without a change."""
    p = plan
    group = p["plan"]["groups"][0]
    filters = ["%s.vendor.oura.>" % p["prefix"], "%s.vendor.whoop.>" % p["prefix"]]
    group["consumers"].append(dict(name="audit-vendor", filter_subjects=filters, ack_policy="explicit", max_deliver=5,
                                   ack_wait="15s", deliver_policy="all", replay_policy="instant"))
    create(cluster, p, p["legacy"], legacy_subjects(p))
    res, out = check(cluster, p)
    assert res.rc == 0 and out["errors"] == [], res.stdout[-3000:]
    p["made"].append(p["vendor"])
    for exists in (False, True):
        res = run_tasks([{"name": "shadow", "ansible.builtin.include_role": {
            "name": "athlete_ally.nats.migration", "tasks_from": "shadow"}, "vars": {
            "migration": p["plan"], "migration_group": group, "migration_legacy": p["legacy"],
            "migration_state_read": {"migration": {"legacy": {"exists": True, "last_seq": 0}}},
            "migration_at": {"exists": exists}, "nats_servers": [cluster.url]}}], servers=cluster.url)
        assert res.rc == 0, res.stdout[-3000:]
        made = res.task("athlete_ally.nats.migration : Create the group's consumers on %s" % p["vendor"])
        assert res.rc == 0 and made["changed"] is not exists, res.stdout[-3000:]
        info = api(cluster.url, "CONSUMER.INFO.%s.audit-vendor" % p["vendor"])
        assert sorted(info["config"].get("filter_subjects") or []) == filters, info
