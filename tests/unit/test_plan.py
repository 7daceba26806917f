"""The migration plan checked as a whole (module_utils/plan.py, plan_live.py, plan_values.py, subjects.py): subject
matching, one line per mistake naming the inventory key, the plan against the cluster's streams, the digest."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import plan, service_contract  # noqa: E402
from tests.support.inventory import rendered  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.subjects import (  # noqa: E402
    name_problem, overlap, subject_problem, subset)


# -- subjects -------------------------------------------------------------------------------
@pytest.mark.parametrize("left, right, expected", [
    ("vendor.>", "vendor.oura.*", True),
    ("vendor.*", "vendor.oura.webhook", False),
    ("a.*", "a.b", True),
    ("a.*", "*.b", True),
    ("a.b", "a.b", True),
    ("a.b", "a.c", False),
    ("a.b", "a.b.c", False),
    ("a.>", "a", False),
    ("a.>", "a.b.c.d", True),
    (">", "a", True),
    (">", ">", True),
    ("a.*.c", "a.b.*", True),
    ("a.*.c", "a.b.d", False),
    ("*", "a.b", False),
    ("*.*", "a.>", True),
    ("vendor.o*", "vendor.oura", False),  # a partial wildcard is a literal token
])
def test_overlap(left, right, expected):
    assert overlap(left, right) is expected
    assert overlap(right, left) is expected


@pytest.mark.parametrize("a, b, expected", [
    ("vendor.oura.*", "vendor.>", True),
    ("vendor.>", "vendor.oura.*", False),
    ("a.b", "a.*", True),
    ("a.*", "a.b", False),
    ("a.*", "a.*", True),
    ("a.>", "a.*", False),
    ("a.b.c", "a.*", False),
    ("a", "a.>", False),
    ("a.b", "a.>", True),
    ("a.*.c", "a.>", True),
    ("a.b", ">", True),
    (">", "a.>", False),
    ("a.>", "a.>", True),
    ("a.b.>", "a.*.>", True),
    ("a.*.>", "a.b.>", False),
    ("a.*", "*.*", True),
    ("a.b.c", "*.b.*", True),
    ("a.b", "a.b.c", False),
    ("a.b.c", "a.b", False),
])
def test_subset(a, b, expected):
    assert subset(a, b) is expected


@pytest.mark.parametrize("subject, problem", [
    ("a.b", None), ("a.*", None), ("a.>", None), (">", None), ("vendor.o*", None),
    ("a..b", "empty token"), (".a", "empty token"), ("a.", "empty token"), ("a.>.b", "'>' only as its last"),
    ("a b", "whitespace"), ("a\tb", "whitespace"), ("", "non-empty"), (None, "non-empty"), (3, "non-empty"),
])
def test_subject_problem(subject, problem):
    found = subject_problem(subject)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize("name, ok", [
    ("AA_CORE_HOT", True), ("normalize-oura", True), ("AA.CORE", False), ("AA*", False), ("AA>", False),
    ("AA/CORE", False), ("AA\\CORE", False), ("AA CORE", False), ("", False), (None, False),
])
def test_name_problem(name, ok):
    assert (name_problem(name) is None) is ok


# -- the plan alone -------------------------------------------------------------------------
BASE = yaml.safe_load("""
legacy: {stream: ATHLETE_ALLY_EVENTS, subjects: ["athlete-ally.>", "vendor.>", "sleep.*"], retention_seconds: 20,
         delete_requires_empty: false}
stream_defaults: {storage: file, retention: limits, max_msgs: -1, max_bytes: -1, replicas: 3, discard: old,
                  duplicate_window: 2m, compression: s2}
dlq: {stream: AA_DLQ, subjects: ["dlq.>"], max_age: 14d, test_subject: dlq.test.phase0}
groups:
  - phase: 1
    name: vendor
    stream: AA_VENDOR_HOT
    subjects: ["vendor.>"]
    max_age: 48h
    consumers:
      - {name: normalize-oura, filter_subject: vendor.oura.webhook.received, ack_policy: explicit, max_deliver: 5,
         ack_wait: 15s, deliver_policy: all, replay_policy: instant}
  - phase: 2
    name: core
    stream: AA_CORE_HOT
    subjects: ["athlete-ally.>", "sleep.*"]
    max_age: 48h
    consumers:
      - {name: normalize-hrv-durable, filter_subject: athlete-ally.hrv.raw-received, ack_policy: explicit,
         max_deliver: 5, ack_wait: 60s, deliver_policy: all, replay_policy: instant, max_ack_pending: 1000}
service: normalize-service
modes:
  single: {EVENT_STREAM_MODE: single, AA_STREAM_CANDIDATES: ATHLETE_ALLY_EVENTS}
  multi: {EVENT_STREAM_MODE: multi, AA_STREAM_CANDIDATES: "AA_CORE_HOT, AA_VENDOR_HOT,ATHLETE_ALLY_EVENTS"}
image: athlete-ally/normalize:phase2-migration
phase2_strategy: env
blue_green: {blue: normalize-service, green: normalize-service-green, replicas: 1, keep_seconds: 86400}
soak_seconds: {0: 4, 1: 8, 2: 8}
soak_poll_seconds: 2
alerts: {consumer_lag: 100, consumer_lag_seconds: 6, error_rate: 0.10, no_inserts_seconds: 0}
backlog_max: 100
thresholds:
  max_pending: {normalize-hrv-durable: 10, normalize-oura: 5}
  error_rate: 0.01
  rate_min_ratio: 0.5
  rate_window_seconds: 20
  log_lines: 400
post: {remove_verification_rows: true}
drain_timeout: 120
drain_stall_timeout: 60
verify_poll_interval: 0.25s
catchup_timeout: 60
backup: {type: file, path: /var/backups/last-snapshot, max_age: 6h}
preflight_valid_for: 24h
staging_binding_check: false
""")


def mine(m):
    """plan_errors without the service contract's lines (the other checks' own module, tested there)."""
    lines = plan.plan_errors(m)
    for line in service_contract.plan_errors(m) if isinstance(m, dict) else []:
        lines.remove(line)
    return lines


def mutated(path, value=None, delete=False, append=None):
    """BASE with the value at ``path`` ("groups.0.subjects") set, deleted or appended to."""
    m = copy.deepcopy(BASE)
    *head, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = m
    for p in head:
        node = node[p]
    if delete:
        del node[last]
    elif append is not None:
        node[last].append(append)
    else:
        node[last] = value
    return m


def test_base_plan_passes_and_includes_the_contract_lines():
    assert mine(BASE) == []
    assert plan.plan_errors(BASE) == mine(BASE) + service_contract.plan_errors(BASE)


def inventory_plan(inventory):
    # staging and production name their topology from inventories/migration_topology.yml: Ansible renders the plan
    return rendered(inventory)


def staging_expected(m):
    """The one line a plan that requires a staging run has until a staging run's digest is filled in (production,
    whose inventory carries a placeholder): none when not required or when the digest is this plan's."""
    theirs = (m.get("staging_validated") or {}).get("topology_digest")
    if not m.get("require_staging_validation") or theirs == plan.topology_digest(m):
        return []
    ours, text = plan.topology_digest(m)[:12], str(theirs)
    shown = text[:12] if re.fullmatch(r"[0-9a-f]{64}", text) else repr(text if len(text) <= 32 else text[:29] + "...")
    what = "missing; this plan's topology is %s:" % ours if not theirs else \
        "staging validated topology %s, this plan's is %s;" % (shown, ours)
    return ["migration.staging_validated.topology_digest: %s run the migration on staging with this topology first "
            "and copy the digest its validate.yml prints" % what]


@pytest.mark.parametrize("inventory", ["staging", "production"])
def test_the_real_inventories_pass(inventory):
    """The lab inventory is templated; tests/integration/test_plan.py renders it through ansible-playbook.
    Production passes but for the staging run it waits for (its digest a placeholder until staging ran)."""
    m = inventory_plan(inventory)
    assert plan.plan_errors(m) == staging_expected(m)
    assert not (inventory == "staging" and m.get("require_staging_validation"))  # staging is the run it waits for


def test_staging_and_production_share_one_topology():
    assert plan.topology_digest(inventory_plan("staging")) == plan.topology_digest(inventory_plan("production"))


def one_line(m, key, fragment):
    lines = mine(m)
    assert len(lines) == 1, lines
    assert lines[0].startswith(key + ": "), lines
    assert fragment in lines[0], lines
    return lines[0]


CASES = [
    # legacy
    (dict(path="legacy.stream", value="ATHLETE.EVENTS"), "migration.legacy.stream", "not a valid stream name"),
    (dict(path="legacy.subjects", append="extra.>"), "migration.legacy.subjects", "'extra.>' is in no group"),
    (dict(path="legacy.retention_seconds", value="14d"), "migration.legacy.retention_seconds", "('14d' is 1209600)"),
    (dict(path="legacy.retention_seconds", delete=True), "migration.legacy.retention_seconds", "missing"),
    (dict(path="legacy.delete_requires_empty", value="no"), "migration.legacy.delete_requires_empty", "true or false"),
    # groups
    (dict(path="groups", value=[]), "migration.groups", "missing or empty"),
    (dict(path="groups.1.phase", value=1), "migration.groups[1].phase", "1 is also migration.groups[0].phase"),
    (dict(path="groups.0.phase", value=0), "migration.groups[0].phase", "out of range"),
    (dict(path="groups.0.phase", value="one"), "migration.groups[0].phase", "expected an integer"),
    (dict(path="groups.0.phase", value=True), "migration.groups[0].phase", "expected an integer"),
    (dict(path="groups.1.name", value="vendor"), "migration.groups[1].name", "also migration.groups[0].name"),
    (dict(path="groups.1.stream", value="AA_VENDOR_HOT"), "migration.groups[1].stream",
     "also migration.groups[0].stream"),
    (dict(path="groups.1.stream", value="ATHLETE_ALLY_EVENTS"), "migration.groups[1].stream",
     "'ATHLETE_ALLY_EVENTS' is the legacy stream; give the group a new stream"),
    (dict(path="groups.0.stream", value="AA_DLQ"), "migration.groups[0].stream", "also migration.dlq.stream"),
    (dict(path="groups.0.stream", value="AA VENDOR"), "migration.groups[0].stream", "whitespace"),
    (dict(path="groups.0.stream", value="AA/VENDOR"), "migration.groups[0].stream", "'/'"),
    (dict(path="groups.0.stream", value="AA_VENDOR.HOT"), "migration.groups[0].stream", "not a valid stream name"),
    (dict(path="groups.0.stream", delete=True), "migration.groups[0].stream", "missing"),
    (dict(path="groups.1.subjects", append="vendor.>"), "migration.groups[1].subjects",
     "'vendor.>' overlaps 'vendor.>' of migration.groups[0].subjects; put each subject in exactly one group"),
    (dict(path="groups.1.subjects", append="hrv.raw"), "migration.groups[1].subjects",
     "'hrv.raw' is not one of migration.legacy.subjects"),
    (dict(path="groups.1.subjects", append="sleep..x"), "migration.groups[1].subjects", "empty token"),
    (dict(path="groups.1.subjects", append="sleep.*"), "migration.groups[1].subjects", "listed twice"),
    (dict(path="dlq.subjects", append="dlq.vendor.*"), "migration.dlq.subjects",
     "'dlq.vendor.*' overlaps 'dlq.>' in the same list; the server refuses that"),
    (dict(path="dlq.max_age", value="1m"), "migration.dlq.max_age",
     "1m is shorter than migration.stream_defaults.duplicate_window 2m"),
    (dict(path="groups.0.consumers.0.filter_subjects", value=["vendor.oura.>", "vendor.*.webhook"], delete=False),
     "migration.groups[0].consumers[0]", "both filter_subject and filter_subjects"),
    (dict(path="groups.0.max_age", value="two days"), "migration.groups[0].max_age", "cannot read"),
    (dict(path="groups.0.max_age", value="1m"), "migration.groups[0].max_age",
     "shorter than migration.stream_defaults.duplicate_window"),
    (dict(path="groups.0.consumer", value=[]), "migration.groups[0].consumer", "did you mean consumers?"),
    # consumers
    (dict(path="groups.0.consumers.0.filter_subject", value="athlete-ally.x"),
     "migration.groups[0].consumers[0].filter_subject", "not inside the group's subjects"),
    (dict(path="groups.0.consumers.0.filter_subject", value="vendor..x"),
     "migration.groups[0].consumers[0].filter_subject", "empty token"),
    (dict(path="groups.0.consumers.0.filter_subject", delete=True),
     "migration.groups[0].consumers[0].filter_subject", "missing"),
    (dict(path="groups.0.consumers.0.filter_subjects", value=["vendor.x"]), "migration.groups[0].consumers[0]",
     "both filter_subject and filter_subjects"),
    (dict(path="groups.0.consumers.0.ack_wait", value="a while"), "migration.groups[0].consumers[0].ack_wait",
     "cannot read"),
    (dict(path="groups.0.consumers.0.ack_wait", value=0), "migration.groups[0].consumers[0].ack_wait",
     "more than 0"),
    (dict(path="groups.0.consumers.0.max_deliver", value="five"), "migration.groups[0].consumers[0].max_deliver",
     "expected an integer"),
    (dict(path="groups.0.consumers.0.max_deliver", value=0), "migration.groups[0].consumers[0].max_deliver",
     "0 is not allowed"),
    (dict(path="groups.0.consumers.0.deliver_policy", value="by_start_sequence"),
     "migration.groups[0].consumers[0].deliver_policy", "not one of all, last, new, last_per_subject"),
    (dict(path="groups.0.consumers.0.ack_policy", delete=True), "migration.groups[0].consumers[0].ack_policy",
     "missing"),
    (dict(path="groups.0.consumers.0.inactive_threshold", value="1h"),
     "migration.groups[0].consumers[0].inactive_threshold", "is not applied"),
    (dict(path="thresholds.max_pending.normalize-ouraa", value=5), "migration.thresholds.max_pending.normalize-ouraa",
     "names no consumer"),
    (dict(path="thresholds.max_pending.normalize-oura", value="few"), "migration.thresholds.max_pending.normalize-oura",
     "expected an integer"),
    # DLQ
    (dict(path="dlq.stream", value="AA_VENDOR_HOT"), "migration.groups[0].stream", "also migration.dlq.stream"),
    (dict(path="dlq.stream", value="AA.DLQ"), "migration.dlq.stream", "not a valid stream name"),
    (dict(path="dlq.subjects", append="vendor.dead.>"), "migration.dlq.subjects",
     "'vendor.dead.>' overlaps 'vendor.>' of migration.legacy.subjects"),
    (dict(path="dlq.max_age", value="forever"), "migration.dlq.max_age", "cannot read"),
    (dict(path="dlq.test_subject", value="dlq.*"), "migration.dlq.test_subject", "one subject (no wildcard)"),
    (dict(path="dlq.test_subject", value="test.dlq"), "migration.dlq.test_subject", "inside migration.dlq.subjects"),
    # modes and service
    (dict(path="modes.multi.AA_STREAM_CANDIDATES", value="AA_CORE_HOT,ATHLETE_ALLY_EVENTS"), "migration.modes.multi",
     "no value names AA_VENDOR_HOT (migration.groups[0].stream)"),
    (dict(path="modes.single.AA_STREAM_CANDIDATES", value="AA_CORE_HOT"), "migration.modes.single",
     "the legacy stream ATHLETE_ALLY_EVENTS"),
    (dict(path="modes.single", value={}), "migration.modes.single", "is empty"),
    (dict(path="modes.multi", delete=True), "migration.modes.multi", "missing"),
    (dict(path="service", value=""), "migration.service", "missing"),
    (dict(path="phase2_strategy", value="canary"), "migration.phase2_strategy", "not one of env, blue_green"),
    (dict(path="blue_green.green", value="normalize-service"), "migration.blue_green.green", "same deployment"),
    (dict(path="blue_green.keep_seconds", value="1d"), "migration.blue_green.keep_seconds", "('1d' is 86400)"),
    (dict(path="staging_binding_check", value=True), "migration.staging_service", "missing"),
    # streams
    (dict(path="stream_defaults.max_bytes", value="1G"), "migration.stream_defaults.max_bytes",
     "(1G is 1073741824)"),
    (dict(path="stream_defaults.max_bytes", value=-2), "migration.stream_defaults.max_bytes", "out of range"),
    (dict(path="stream_defaults.replicas", value=7), "migration.stream_defaults.replicas", "between 1 and 5"),
    (dict(path="stream_defaults.storage", value="disk"), "migration.stream_defaults.storage", "not one of file"),
    (dict(path="stream_defaults.duplicate_window", value="2 min"), "migration.stream_defaults.duplicate_window",
     "cannot read"),
    # durations, soak, thresholds
    (dict(path="drain_timeout", value="long"), "migration.drain_timeout", "cannot read"),
    (dict(path="drain_stall_timeout", delete=True), "migration.drain_stall_timeout", "missing"),
    (dict(path="catchup_timeout", value=0), "migration.catchup_timeout", "more than 0"),
    (dict(path="verify_poll_interval", value="fast"), "migration.verify_poll_interval", "cannot read"),
    (dict(path="preflight_valid_for", delete=True), "migration.preflight_valid_for", "missing"),
    (dict(path="preflight_valid_for", value="a day"), "migration.preflight_valid_for", "cannot read"),
    (dict(path="soak_poll_seconds", value="often"), "migration.soak_poll_seconds", "cannot read"),
    (dict(path="soak_seconds.2", delete=True), "migration.soak_seconds[2]", "missing; set soak window of phase 2"),
    (dict(path="soak_seconds.1", value="half an hour"), "migration.soak_seconds[1]", "cannot read"),
    (dict(path="drain_timout", value=60), "migration.drain_timout", "did you mean drain_timeout?"),
    (dict(path="alerts.consumer_lag", delete=True), "migration.alerts.consumer_lag", "missing"),
    (dict(path="alerts.consumer_lag_seconds", value="10 minutes"), "migration.alerts.consumer_lag_seconds",
     "cannot read"),
    (dict(path="alerts.error_rate", value=10), "migration.alerts.error_rate", "between 0 and 1"),
    (dict(path="backlog_max", value="lots"), "migration.backlog_max", "expected a number"),
    (dict(path="thresholds.error_rate", delete=True), "migration.thresholds.error_rate", "missing"),
    (dict(path="thresholds.rate_min_ratio", value="half"), "migration.thresholds.rate_min_ratio", "expected a number"),
    (dict(path="thresholds.rate_window_seconds", value="5m"), "migration.thresholds.rate_window_seconds",
     "('5m' is 300)"),
    (dict(path="thresholds.log_lines", value=0), "migration.thresholds.log_lines", "out of range"),
    (dict(path="thresholds", delete=True), "migration.thresholds", "missing"),
    # backup
    (dict(path="backup.max_age", delete=True), "migration.backup.max_age", "missing; set the oldest backup"),
    (dict(path="backup.max_age", value="6 hours"), "migration.backup.max_age", "cannot read"),
    (dict(path="backup", value={"type": "rds", "max_age": "6h"}), "migration.backup.instance", "missing"),
    (dict(path="backup", value={"type": "s3"}), "migration.backup.type", "not one of none, rds, file"),
]


@pytest.mark.parametrize("change, key, fragment", CASES, ids=["%s-%d" % (c[1], i) for i, c in enumerate(CASES)])
def test_each_mistake_is_one_line_naming_its_key(change, key, fragment):
    one_line(mutated(**change), key, fragment)


def test_a_group_subject_inside_a_wider_legacy_subject_names_the_exact_string_to_use():
    m = mutated("groups.0.subjects", ["vendor.oura.>"])
    lines = mine(m)
    assert lines == [
        "migration.groups[0].subjects: 'vendor.oura.>' is not one of migration.legacy.subjects ['athlete-ally.>', "
        "'vendor.>', 'sleep.*']; it lies inside 'vendor.>', but the cut-over moves exact subject strings: use "
        "'vendor.>' in the group or split the legacy subject",
        "migration.legacy.subjects: 'vendor.>' is in no group; phase 3 would delete it with the legacy stream: add "
        "it to one group's subjects"], lines


def test_wildcard_overlap_between_groups():
    m = mutated("groups.1.subjects", append="vendor.oura.*")
    assert mine(m) == [
        "migration.groups[1].subjects: 'vendor.oura.*' overlaps 'vendor.>' of migration.groups[0].subjects; put each "
        "subject in exactly one group"]


def test_an_emptied_group_leaves_its_legacy_subject_in_no_group():
    assert mine(mutated("groups.0.subjects", [])) == [
        "migration.groups[0].subjects: missing or empty; list at least one subject",
        "migration.legacy.subjects: 'vendor.>' is in no group; phase 3 would delete it with the legacy stream: add it "
        "to one group's subjects"]


def test_max_pending_follows_the_consumer_names():
    m = mutated("groups.0.consumers.0.name", "normalize-whoop")
    one_line(m, "migration.thresholds.max_pending.normalize-oura", "names no consumer of any group "
                                                                   "(normalize-hrv-durable, normalize-whoop)")


def test_invalid_consumer_name():
    m = mutated("groups.1.consumers.0.name", "normalize.hrv")
    del m["thresholds"]["max_pending"]
    one_line(m, "migration.groups[1].consumers[0].name", "'normalize.hrv' is not a valid consumer name")


def test_consumers_not_a_list():
    m = mutated("groups.0.consumers", "normalize-oura")
    del m["thresholds"]["max_pending"]
    one_line(m, "migration.groups[0].consumers", "expected a list of consumers (or [] / absent for none)")


def test_overlapping_subjects_in_one_list():
    m = mutated("legacy.subjects", append="vendor.oura.*")
    m["groups"][0]["subjects"].append("vendor.oura.*")
    assert mine(m) == [
        "migration.legacy.subjects: 'vendor.oura.*' overlaps 'vendor.>' in the same list; the server refuses that: "
        "keep the wider one",
        "migration.groups[0].subjects: 'vendor.oura.*' overlaps 'vendor.>' in the same list; the server refuses that: "
        "keep the wider one"]
    c = mutated("groups.0.consumers.0.filter_subjects", ["vendor.oura.>", "vendor.*.webhook.received"])
    del c["groups"][0]["consumers"][0]["filter_subject"]
    one_line(c, "migration.groups[0].consumers[0].filter_subjects",
             "'vendor.*.webhook.received' overlaps 'vendor.oura.>' in the same list")


def test_groups_out_of_phase_order():
    m = copy.deepcopy(BASE)
    m["groups"].reverse()
    one_line(m, "migration.groups", "phases [2, 1] are not in ascending order")


@pytest.mark.parametrize("consumers", [None, []])
def test_a_group_may_have_no_consumers(consumers):
    m = mutated("groups.0.consumers", consumers)
    m["thresholds"]["max_pending"].pop("normalize-oura")
    assert mine(m) == []
    del m["groups"][0]["consumers"]
    assert mine(m) == []


def test_filter_subjects_inside_the_group_and_workqueue_needs_disjoint_filters():
    m = copy.deepcopy(BASE)
    c = m["groups"][0]["consumers"][0]
    del c["filter_subject"]
    c["filter_subjects"] = ["vendor.oura.>", "vendor.whoop.*"]
    m["groups"][0]["consumers"].append(dict(c, name="audit", filter_subjects=["vendor.oura.webhook.received"]))
    assert mine(m) == []
    m["stream_defaults"]["retention"] = "workqueue"
    one_line(m, "migration.groups[0].consumers[1]", "its filter overlaps consumer normalize-oura's")
    m["groups"][0]["consumers"][1]["filter_subjects"] = ["athlete-ally.x"]
    assert mine(m) == ["migration.groups[0].consumers[1].filter_subjects: 'athlete-ally.x' is not inside the "
                       "group's subjects ['vendor.>']; filter on a subject the group's stream holds"]


def test_templated_numbers_and_string_keys_are_read_as_the_playbooks_read_them():
    m = copy.deepcopy(BASE)
    m["legacy"]["retention_seconds"] = "20"
    m["soak_seconds"] = {"0": "15m", "1": 1800, "2": "3600"}
    m["stream_defaults"]["max_bytes"] = "-1"
    m["backup"] = {"type": "none"}
    assert mine(m) == []


@pytest.mark.parametrize("migration", [None, "x", [], {"groups": "vendor"}, {"groups": [None, "x", {}]},
                                       {"legacy": [], "dlq": 3, "modes": {"multi": [1]}, "soak_seconds": [0]}])
def test_a_malformed_plan_gives_lines_not_a_crash(migration):
    lines = plan.plan_errors(migration)
    assert lines and all(re.match(r"migration[.\[\]\w-]*: ", line) for line in lines), lines
    assert isinstance(plan.live_errors(migration, [info("X", ["a.b"])]), list)


# -- the plan against the cluster -------------------------------------------------------------
def info(name, subjects=(), sources=(), metadata=None):
    return {"config": {"name": name, "subjects": list(subjects), "sources": [{"name": s} for s in sources],
                       "metadata": metadata or {}}, "state": {"messages": 0}}


LEGACY = info("ATHLETE_ALLY_EVENTS", ["athlete-ally.>", "vendor.>", "sleep.*"])
LEGACY_AFTER_1 = info("ATHLETE_ALLY_EVENTS", ["athlete-ally.>", "sleep.*"])
VENDOR_SHADOW = info("AA_VENDOR_HOT", [], sources=["ATHLETE_ALLY_EVENTS"])
VENDOR_MOVED = info("AA_VENDOR_HOT", ["vendor.>"])
CORE_MOVED = info("AA_CORE_HOT", ["athlete-ally.>", "sleep.*"])
DLQ = info("AA_DLQ", ["dlq.>"])


@pytest.mark.parametrize("streams", [
    [LEGACY],                                               # before anything
    [LEGACY, DLQ, info("OTHER", ["billing.>"])],            # phase 0 done, an unrelated stream elsewhere
    [LEGACY, DLQ, VENDOR_SHADOW],                           # phase 1 shadow ready
    [LEGACY_AFTER_1, DLQ, VENDOR_MOVED],                    # phase 1 cut over
    [LEGACY_AFTER_1, DLQ, VENDOR_MOVED, info("AA_CORE_HOT", sources=["ATHLETE_ALLY_EVENTS"])],
    [info("ATHLETE_ALLY_EVENTS"), DLQ, VENDOR_MOVED, CORE_MOVED],   # both moved, legacy not yet deleted
    [DLQ, VENDOR_MOVED, CORE_MOVED],                        # phase 3 done
    # a rollback's leftover: the new stream without subjects but with the journal
    [LEGACY, info("AA_VENDOR_HOT", metadata={"aa.migration.phase1.rolled_back_at": "100",
                                             "aa.migration.phase1.cutover_at": "90"})],
])
def test_every_state_of_a_migration_passes(streams):
    assert plan.live_errors(BASE, streams) == []


def test_a_cut_over_interrupted_between_its_two_updates_is_not_a_mistake():
    legacy = info("ATHLETE_ALLY_EVENTS", ["athlete-ally.>", "sleep.*"], metadata={
        "aa.migration.phase": "1", "aa.migration.phase1.cutover_at": "100"})
    assert plan.live_errors(BASE, [legacy, VENDOR_SHADOW]) == []
    back = info("AA_VENDOR_HOT", [], sources=["ATHLETE_ALLY_EVENTS"], metadata={
        "aa.migration.phase1.cutover_at": "100", "aa.migration.phase1.rolled_back_at": "200"})
    assert plan.live_errors(BASE, [legacy, back]) == []
    # the same placement without a journal: nobody moved it, the legacy stream simply lacks it
    assert plan.live_errors(BASE, [LEGACY_AFTER_1, VENDOR_SHADOW]) == [
        "migration.groups[0].subjects: 'vendor.>' is held neither by the legacy stream ATHLETE_ALLY_EVENTS "
        "(['athlete-ally.>', 'sleep.*']) nor by AA_VENDOR_HOT; add it to the legacy stream or remove it from the group"]


@pytest.mark.parametrize("streams, key, fragment", [
    ([LEGACY, info("AA_VENDOR_HOT", ["billing.>"])], "migration.groups[0].stream",
     "stream AA_VENDOR_HOT exists at the cluster and is not this group's"),
    ([LEGACY, info("AA_DLQ", ["deadletters.>"])], "migration.dlq.stream",
     "exists with subjects ['deadletters.>'], none of migration.dlq.subjects"),
    ([LEGACY, info("DEAD", ["dlq.vendor.*"])], "migration.dlq.subjects",
     "'dlq.>' overlaps 'dlq.vendor.*' of stream DEAD, which is not part of the migration"),
    ([info("ATHLETE_ALLY_EVENTS", ["athlete-ally.>", "vendor.>", "sleep.*", "sleep2.*"])], "migration.groups",
     "holds 'sleep2.*', which no group lists; phase 3 would delete it"),
    ([info("ATHLETE_ALLY_EVENTS", ["athlete-ally.>", "vendor.>"])], "migration.groups[1].subjects",
     "'sleep.*' is held neither by the legacy stream"),
    ([LEGACY_AFTER_1, info("AA_VENDOR_HOT", ["vendor.>", "whoop.>"])], "migration.groups[0].subjects",
     "stream AA_VENDOR_HOT holds 'whoop.>', which the group does not list"),
    ([DLQ, VENDOR_MOVED], "migration.legacy.stream",
     "stream ATHLETE_ALLY_EVENTS does not exist at the cluster and migration.groups[1] are not on their own streams"),
])
def test_each_live_mistake_is_one_line(streams, key, fragment):
    lines = plan.live_errors(BASE, streams)
    assert len(lines) == 1 and lines[0].startswith(key + ": ") and fragment in lines[0], lines


def test_a_group_subject_held_by_the_legacy_stream_only_through_a_wider_one():
    lines = plan.live_errors(BASE, [info("ATHLETE_ALLY_EVENTS", ["athlete-ally.>", "vendor.>", "sleep.>"])])
    assert lines == [
        "migration.groups[1].subjects: 'sleep.*' is held neither by the legacy stream ATHLETE_ALLY_EVENTS "
        "(['athlete-ally.>', 'vendor.>', 'sleep.>']) nor by AA_CORE_HOT; only inside 'sleep.>' there, and the cut-over "
        "moves exact subject strings: list 'sleep.>' in the group",
        "migration.groups: the legacy stream ATHLETE_ALLY_EVENTS holds 'sleep.>', which no group lists; phase 3 would "
        "delete it with the stream: add it to a group's subjects"]


def test_an_unrelated_stream_on_a_group_subject_the_legacy_stream_lacks():
    lines = plan.live_errors(BASE, [info("ATHLETE_ALLY_EVENTS", ["athlete-ally.>", "vendor.>"]),
                                    info("SLEEP", ["sleep.raw"])])
    assert [line.split(":")[0] for line in lines] == ["migration.groups[1].subjects"] * 2, lines
    assert "'sleep.*' overlaps 'sleep.raw' of stream SLEEP" in lines[1]


def test_group_summary_with_placement():
    rows = plan.group_summary(BASE, [LEGACY_AFTER_1, VENDOR_MOVED])
    assert rows[0] == dict(phase=1, name="vendor", stream="AA_VENDOR_HOT", subjects=["vendor.>"],
                           consumers=["normalize-oura"], placement={"vendor.>": "own"})
    assert rows[1]["placement"] == {"athlete-ally.>": "legacy", "sleep.*": "legacy"}
    assert "placement" not in plan.group_summary(BASE)[0]


# -- digest ---------------------------------------------------------------------------------
def test_digest_is_stable_across_key_order_and_key_types_and_follows_every_value():
    d = plan.plan_digest(BASE)
    assert re.fullmatch(r"[0-9a-f]{64}", d)
    reordered = {k: BASE[k] for k in reversed(list(BASE))}
    reordered["soak_seconds"] = {"2": 8, "1": 8, "0": 4}
    assert plan.plan_digest(reordered) == d
    assert plan.plan_digest(mutated("groups.1.consumers.0.max_deliver", 6)) != d
    assert plan.plan_digest(mutated("groups.1.subjects", ["sleep.*", "athlete-ally.>"])) != d


# -- the staging run tied to the production one ------------------------------------------------
@pytest.mark.parametrize("path, value", [
    ("dlq.max_age", "7d"), ("groups.0.max_age", "72h"), ("groups.0.consumers.0.ack_wait", "30s"),
    ("groups.1.consumers.0.max_ack_pending", 500), ("soak_seconds", {0: 900, 1: 1800, 2: 3600}),
    ("thresholds.error_rate", 0.05), ("alerts.consumer_lag", 1000), ("backup", {"type": "none"}),
    ("stream_defaults.replicas", 5), ("legacy.retention_seconds", 1209600), ("preflight_valid_for", "12h"),
    ("groups.0.subjects", ["vendor.>"]), ("legacy.subjects", ["sleep.*", "vendor.>", "athlete-ally.>"]),
    ("modes.multi.AA_STREAM_CANDIDATES", "AA_CORE_HOT,AA_VENDOR_HOT,ATHLETE_ALLY_EVENTS"),
    ("staging_validated", {"topology_digest": "0" * 64}), ("require_staging_validation", True),
])
def test_topology_digest_ignores_what_differs_between_environments(path, value):
    assert plan.topology_digest(mutated(path, value)) == plan.topology_digest(BASE)


@pytest.mark.parametrize("path, value", [
    ("legacy.stream", "EVENTS"), ("legacy.subjects", ["athlete-ally.>", "vendor.>", "sleep.>"]),
    ("groups.0.stream", "AA_VENDOR"), ("groups.0.name", "vendors"), ("groups.1.phase", 3),
    ("groups.1.subjects", ["athlete-ally.>"]), ("groups.0.consumers.0.name", "normalize-whoop"),
    ("groups.0.consumers.0.filter_subject", "vendor.oura.>"), ("dlq.stream", "DLQ"), ("dlq.subjects", ["dead.>"]),
    ("modes.multi.AA_STREAM_CANDIDATES", "AA_VENDOR_HOT,AA_CORE_HOT,ATHLETE_ALLY_EVENTS"),  # binds another first
    ("modes.single.EVENT_STREAM_MODE", "legacy"), ("groups.0.consumers", []),
])
def test_topology_digest_follows_the_topology(path, value):
    assert plan.topology_digest(mutated(path, value)) != plan.topology_digest(BASE)


def test_a_required_staging_run_must_have_validated_this_topology():
    ours = plan.topology_digest(BASE)
    todo = "run the migration on staging with this topology first and copy the digest its validate.yml prints"
    required = mutated("require_staging_validation", True)
    assert mine(required) == ["migration.staging_validated.topology_digest: missing; this plan's topology is %s: %s"
                              % (ours[:12], todo)]
    required["staging_validated"] = {"topology_digest": "1a2b3c4d5e6f" + "0" * 52}
    assert mine(required) == ["migration.staging_validated.topology_digest: staging validated topology 1a2b3c4d5e6f, "
                              "this plan's is %s; %s" % (ours[:12], todo)]
    required["staging_validated"] = {"topology_digest": "FILL IN: the digest staging validate.yml prints"}
    one_line(required, "migration.staging_validated.topology_digest",
             "staging validated topology 'FILL IN: the digest staging v...', this plan's is %s" % ours[:12])
    required["staging_validated"] = {"topology_digest": ours}
    assert mine(required) == []
    # the environment's own values may differ from staging's: the digest still matches
    required["soak_seconds"] = {0: 900, 1: 1800, 2: 3600}
    assert mine(required) == []
    # set without being required, it must match all the same (a stale digest is a mistake, not a no-op)
    stale = mutated("staging_validated", {"topology_digest": "f" * 64})
    one_line(stale, "migration.staging_validated.topology_digest", "staging validated topology ffffffffffff")
    one_line(mutated("staging_validated", ours), "migration.staging_validated", "expected a mapping")
    one_line(mutated("require_staging_validation", "yes"), "migration.require_staging_validation", "true or false")
    assert mine(mutated("require_staging_validation", False)) == []


def test_a_mistake_the_plan_names_is_not_named_again_by_the_cluster():
    """plan_errors and live_errors together: one line per mistake (the module returns both)."""
    def both(m, streams):
        return mine(m) + plan.live_errors(m, streams)

    no_group = mutated("groups.1.subjects", ["athlete-ally.>"])  # sleep.* in no group, held by the legacy stream
    assert both(no_group, [LEGACY]) == [
        "migration.legacy.subjects: 'sleep.*' is in no group; phase 3 would delete it with the legacy stream: add it "
        "to one group's subjects"]
    two_groups = mutated("groups.1.subjects", append="vendor.oura.*")  # also inside vendor.> on the legacy stream
    assert [line.split(":")[0] for line in both(two_groups, [LEGACY])] == ["migration.groups[1].subjects"]
    not_legacy = mutated("groups.1.subjects", append="hrv.raw")  # neither in the plan's legacy nor on the stream
    assert [line.split(":")[0] for line in both(not_legacy, [LEGACY])] == ["migration.groups[1].subjects"]
    assert "is not one of migration.legacy.subjects" in both(not_legacy, [LEGACY])[0]
