"""Each plan-mistake category of issue 15, through ansible-playbook on the lab: the lab's own plan (the inventory's
``migration``, rendered by Ansible) with one mistake, passed with ``-e @file``, is refused by ``preflight.yml`` and by
``phase1.yml`` in one line naming the inventory key, and nothing is written: every stream's config and state and
every consumer's config are as before, and no go/no-go bucket (``KV_<migration.control_bucket>``) exists.

The plan check is the first task of both playbooks, so these runs stop before anything else the phase does (its
soaks, verification, services) and depend on none of it.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from lab.ansible_run import REPO, run_playbook_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

UNRELATED = "AA_ORDERS"  # a stream outside the migration, created by the "taken stream name" case
# Tasks that may run before the plan check: the role's include and its argument check.
HARMLESS = ("ansible.builtin.include_role", "include_role", "ansible.builtin.validate_argument_spec",
            "validate_argument_spec")
_DELETE = object()


def _set(m, path, value):
    *head, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for p in head:
        m = m[p]
    if value is _DELETE:
        del m[last]
    else:
        m[last] = value


def _append(path, value):
    def change(m):
        *head, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        for p in head:
            m = m[p]
        m[last].append(value)
    return change


def _stream_taken(m):
    """Group 2's stream renamed to one an unrelated stream already has (the modes follow, so that is the only
    mistake)."""
    old = m["groups"][1]["stream"]
    m["groups"][1]["stream"] = UNRELATED
    for env in m["modes"].values():
        for k, x in env.items():
            env[k] = ",".join(UNRELATED if t.strip() == old else t for t in str(x).split(","))


def _consumer_in_wrong_group(m):
    """Group 2's consumer also listed (under another name) in group 1, whose subjects do not hold its filter."""
    m["groups"][0]["consumers"].append(dict(m["groups"][1]["consumers"][0], name="audit-hrv"))
    m["groups"][0]["consumers"][-1].pop("max_ack_pending", None)


# (id, change of the lab's plan, inventory key of the one line, fragment of it). Written against the lab inventory:
# group 1 vendor (vendor.>), group 2 core (athlete-ally.>, sleep.*), legacy ATHLETE_ALLY_EVENTS holding all three.
CASES = [
    ("subject-in-two-groups", _append("groups.1.subjects", "vendor.oura.*"), "migration.groups[1].subjects",
     "'vendor.oura.*' overlaps 'vendor.>' of migration.groups[0].subjects; put each subject in exactly one group"),
    ("legacy-subject-in-no-group", lambda m: m["groups"][1]["subjects"].remove("sleep.*"), "migration.legacy.subjects",
     "'sleep.*' is in no group; phase 3 would delete it with the legacy stream"),
    # The plan agrees with itself (legacy.subjects lists it too); the live legacy stream does not hold it.
    ("group-subject-not-on-legacy-stream",
     lambda m: (m["legacy"]["subjects"].append("hrv.raw"), m["groups"][1]["subjects"].append("hrv.raw")),
     "migration.groups[1].subjects", "'hrv.raw' is held neither by the legacy stream ATHLETE_ALLY_EVENTS"),
    ("malformed-duration", lambda m: _set(m, "groups.0.max_age", "two days"), "migration.groups[0].max_age",
     "cannot read 'two days' as a duration"),
    ("stream-name-taken", _stream_taken, "migration.groups[1].stream",
     "stream %s exists at the cluster and is not this group's" % UNRELATED),
    ("consumer-filter-outside-group", _consumer_in_wrong_group, "migration.groups[0].consumers[1].filter_subject",
     "is not inside the group's subjects ['vendor.>']"),
    ("mode-missing-new-stream",
     lambda m: _set(m, "modes.multi.AA_STREAM_CANDIDATES", "AA_CORE_HOT,ATHLETE_ALLY_EVENTS"),
     "migration.modes.multi", "no value names AA_VENDOR_HOT (migration.groups[0].stream)"),
    ("missing-threshold", lambda m: _set(m, "thresholds.error_rate", _DELETE), "migration.thresholds.error_rate",
     "missing"),
    ("duplicate-phase", lambda m: _set(m, "groups.1.phase", 1), "migration.groups[1].phase",
     "1 is also migration.groups[0].phase; give each group its own phase number"),
    # production's tie to staging (issue 15 item 6): required, and no staging run's topology digest given
    ("staging-run-required", lambda m: _set(m, "require_staging_validation", True),
     "migration.staging_validated.topology_digest", "missing; this plan's topology is"),
]


def _play(path, tasks):
    path.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                     "tasks": tasks}]))
    return path


@pytest.fixture(scope="module")
def lab_plan(lab, tmp_path_factory):
    """The lab's ``migration`` as the playbooks see it (templates rendered), read once."""
    path = _play(tmp_path_factory.mktemp("plan") / "dump.yml",
                 [{"name": "dump", "ansible.builtin.debug": {"msg": "{{ migration | to_json }}"}}])
    res = run_playbook_file(path)
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    plan = json.loads(res.task("dump")["msg"])
    # the plan as it is passes (else every refusal below could be for another reason)
    check = run_playbook_file(_play(path, [{"name": "plan", "athlete_ally.nats.migration_plan": {
        "plan": "{{ migration }}", "servers": "{{ nats_servers }}", "user": "{{ nats_user }}",
        "password": "{{ nats_password }}"}}]))
    assert check.rc == 0, check.stdout[-3000:]
    return plan


def snapshot(lab):
    """Every stream's config and state and every consumer's config (what a refused run must leave as it was).
    Consumers' delivery counters are left out: the lab's idle services poll them."""
    out, offset = {}, 0
    while True:
        page = lab.js("STREAM.LIST", {"offset": offset})
        assert "error" not in page, page
        for info in page.get("streams") or []:
            name = info["config"]["name"]
            consumers = lab.js("CONSUMER.LIST." + name, {"offset": 0})
            assert "error" not in consumers and consumers["total"] <= consumers["limit"], consumers
            out[name] = dict(config=info["config"], state=info["state"],
                             consumers={c["name"]: c["config"] for c in consumers.get("consumers") or []})
        offset += len(page.get("streams") or [])
        if not page.get("streams") or offset >= page["total"]:
            return out


@pytest.mark.parametrize("change, key, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_plan_mistake_is_refused_by_preflight_and_by_the_phase_in_one_line_writing_nothing(
        lab, lab_plan, tmp_path, change, key, fragment):
    plan = copy.deepcopy(lab_plan)
    change(plan)
    made = []
    if UNRELATED in json.dumps(plan):
        reply = lab.js("STREAM.CREATE." + UNRELATED, {"name": UNRELATED, "subjects": ["orders.>"], "num_replicas": 1})
        assert "error" not in reply, reply
        made.append(UNRELATED)
    try:
        vars_file = tmp_path / "plan.json"
        vars_file.write_text(json.dumps({"migration": plan}))
        before = snapshot(lab)
        for playbook in ("preflight.yml", "phase1.yml"):
            res = run_playbook_file(REPO / "playbooks" / playbook, ["-e", "@%s" % vars_file], timeout=300)
            failed = [t for t in res.tasks if t.get("failed")]
            assert res.rc != 0 and failed, "%s passed: %s" % (playbook, res.stdout[-3000:])
            out = failed[0]
            # the plan check (it returns the digest) failed, and it is the only task that ran (includes aside)
            assert "digest" in out and res.stats.get("changed", 0) == 0, (playbook, out, res.stats)
            ran = [t["_name"] for t in res.tasks if t is not out and t.get("action") not in HARMLESS]
            assert ran == [], (playbook, ran, [t.get("action") for t in res.tasks])
            assert len(out["errors"]) == 1 and out["msg"] == out["errors"][0], (playbook, out["errors"])
            assert out["msg"].startswith(key + ": ") and fragment in out["msg"], (playbook, out["msg"])
        after = snapshot(lab)
        assert after == before
        bucket = "KV_" + lab_plan["control_bucket"]
        assert bucket not in after and lab.js("STREAM.INFO." + bucket)["error"]["err_code"] == 10059
    finally:
        for name in made:
            lab.js("STREAM.DELETE." + name)
