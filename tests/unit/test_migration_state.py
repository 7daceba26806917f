"""The migration's derived step, placement, readers and journal rules (module_utils/migration_state.py)."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.filter.migration import (  # noqa: E402
    journal_entries, migration_group, shadow_sources)
from ansible_collections.athlete_ally.nats.plugins.module_utils import migration_state as ms  # noqa: E402

NOW = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.timezone.utc)


def consumer(reader=False, exists=True, behind=0):
    return dict(exists=exists, reader=reader, behind=behind)


def group(placement, exists=True, sources=(), readers=(True,), journal=None, legacy_journal=None):
    return dict(placement=placement, exists=exists, sources=list(sources), journal=journal or {},
                legacy_journal=legacy_journal or {},
                consumers={"c%d" % i: dict(new=consumer(reader=r, exists=exists), legacy=consumer())
                           for i, r in enumerate(readers)})


@pytest.mark.parametrize("kwargs, step", [
    (dict(placement={"a.>": "legacy"}, exists=False), "not_started"),
    (dict(placement={"a.>": "legacy"}, exists=False, legacy_journal={"rolled_back_at": "5"}), "rolled_back"),
    (dict(placement={"a.>": "legacy"}, readers=(False,)), "shadow_ready"),
    (dict(placement={"a.>": "legacy"}, readers=(True, False)), "shadow_ready"),
    (dict(placement={"a.>": "legacy"}, readers=(True, True)), "bound"),
    (dict(placement={"a.>": "neither"}), "in_limbo"),
    (dict(placement={"a.>": "new", "b.*": "legacy"}), "in_limbo"),
    (dict(placement={"a.>": "new"}, sources=[{"filter_subject": "a.>"}]), "cut_over"),
    (dict(placement={"a.>": "new"}, journal={"cutover_at": "10"}), "caught_up"),
    (dict(placement={"a.>": "new"}, journal={"cutover_at": "10", "verified_at": "11"}), "verified"),
    # a verification older than the latest cut-over (migrated, rolled back, migrated again) does not count
    (dict(placement={"a.>": "new"}, journal={"cutover_at": "10", "verified_at": "9"}), "caught_up"),
    (dict(placement={"a.>": "new"}, journal={"cutover_at": "10", "verified_at": "11", "completed_at": "12"}),
     "complete"),
])
def test_derive_step(kwargs, step):
    assert ms.derive_step(group(**kwargs)) == step


def test_new_stream_without_its_consumers_is_not_a_shadow_yet():
    g = group({"a.>": "legacy"})
    g["consumers"]["c0"]["new"] = consumer(exists=False)
    assert ms.derive_step(g) == "not_started"


def test_placement_ignores_the_server_stand_in_subject():
    legacy = {"name": "LEGACY", "subjects": ["b.>"]}
    new = {"name": "NEW", "subjects": ["NEW"]}  # emptied: the server made it listen on its own name
    assert ms.placement(["a.>", "b.>"], legacy, new) == {"a.>": "neither", "b.>": "legacy"}
    assert ms.placement(["a.>"], None, {"name": "NEW", "subjects": ["a.>"]}) == {"a.>": "new"}


@pytest.mark.parametrize("info, reader", [
    ({"num_waiting": 1}, True),
    ({"push_bound": True}, True),
    ({"ack_floor": {"last_active": "2026-11-29T11:59:57.123456789Z"}}, True),
    ({"ack_floor": {"last_active": "2026-11-29T11:59:50Z"}}, False),
    ({"num_waiting": 0, "ack_floor": {"last_active": "0001-01-01T00:00:00Z"}}, False),
    ({}, False),
])
def test_reader_from_consumer_state(info, reader):
    assert ms.consumer_state(dict(info, num_pending=3, num_ack_pending=2), NOW)["reader"] is reader


def test_behind_counts_pending_and_unacknowledged():
    state = ms.consumer_state({"num_pending": 3, "num_ack_pending": 2}, NOW)
    assert state["behind"] == 5 and state["exists"]
    assert ms.consumer_state(None, NOW) == {"exists": False}


def test_journal_entries_filter():
    assert journal_entries({"verified_at": 5}, "2") == {"aa.migration.phase2.verified_at": "5"}
    with pytest.raises(Exception, match="phase number"):
        journal_entries({"verified_at": 5}, "two")


def test_shadow_sources_filter_one_source_per_subject_from_the_tail():
    assert shadow_sources(["athlete-ally.>", "sleep.*"], "ATHLETE_ALLY_EVENTS", "1042") == [
        {"name": "ATHLETE_ALLY_EVENTS", "filter_subject": "athlete-ally.>", "opt_start_seq": 1042},
        {"name": "ATHLETE_ALLY_EVENTS", "filter_subject": "sleep.*", "opt_start_seq": 1042}]
    for subjects, seq, words in ((["vendor.>"], 0, "1 or more"), ("vendor.>", 5, "non-empty list"),
                                 ([], 5, "non-empty list"), (["vendor.>"], "x", "start sequence")):
        with pytest.raises(Exception, match=words):
            shadow_sources(subjects, "ATHLETE_ALLY_EVENTS", seq)


# -- the plan: what is left, from STEPS ---------------------------------------------------------
DAY = 86400
T0 = 1_800_000_000  # a fixed "now" for every clock below; no test reads the machine's clock


def planned(step, journal=None, **kwargs):
    g = group({"a.>": "new"}, journal=journal, **kwargs)
    g["step"] = step
    return ms.plan(g, T0, legacy_retention=14 * DAY, blue_keep=DAY)


@pytest.mark.parametrize("step, next_step, cutover_ahead, moved, verify_ahead", [
    ("not_started", "shadow_ready", True, False, True),
    ("rolled_back", "shadow_ready", True, False, True),
    ("shadow_ready", "bound", True, False, True),
    ("bound", "cut_over", True, False, True),
    ("in_limbo", "cut_over", False, False, True),  # a half-done move: cutover.yml finishes it, nothing before it
    ("cut_over", "caught_up", False, True, True),
    ("caught_up", "verified", False, True, True),
    ("verified", "complete", False, True, False),
    ("complete", None, False, True, False),
])
def test_plan_follows_the_steps(step, next_step, cutover_ahead, moved, verify_ahead):
    p = planned(step)
    assert (p["next_step"], p["cutover_ahead"], p["moved"], p["verify_ahead"]) == (
        next_step, cutover_ahead, moved, verify_ahead)
    assert p["steps_left"] == ms.PATH[ms.PATH.index(next_step):] if next_step else p["steps_left"] == []
    assert p["complete"] is (step == "complete")


def test_every_step_has_a_plan_and_a_rank():
    assert [ms.plan(dict(group({"a.>": "legacy"}), step=s), T0)["next_step"] for s in ms.STEPS]
    assert ms.CUT_OVER_STEPS == ("cut_over", "caught_up", "verified", "complete")


@pytest.mark.parametrize("cut_at, allowed, left", [
    (T0 - 14 * DAY - 1, True, 0),
    (T0 - 14 * DAY, True, 0),        # exactly 14 days: the retention has run out
    (T0 - 14 * DAY + 1, False, 1),   # one second short
    (T0 - DAY, False, 13 * DAY),
])
def test_day_14_clock_starts_at_the_cut_over(cut_at, allowed, left):
    p = planned("complete", journal={"cutover_at": str(cut_at)})
    assert p["cutover_at"] == cut_at and p["delete_allowed_at"] == cut_at + 14 * DAY
    assert (p["delete_allowed"], p["delete_seconds_left"]) == (allowed, left)


def test_a_clock_without_its_start_or_its_length_never_runs_out():
    p = planned("complete")
    assert (p["delete_allowed_at"], p["delete_allowed"], p["delete_seconds_left"]) == (None, False, None)
    assert (p["blue_remove_at"], p["blue_removable"]) == (None, False)
    g = dict(group({"a.>": "new"}, journal={"cutover_at": "1"}), step="complete")
    assert ms.plan(g, T0)["delete_allowed"] is False  # no retention given: not computed, never "allowed"


@pytest.mark.parametrize("now, removable, left", [
    (T0 + DAY, True, 0),             # exactly 24 h after blue was scaled down
    (T0 + DAY - 0.5, False, 1),      # half a second left rounds up: never "0 s left" before it ran out
    (T0 + 3600, False, DAY - 3600),
    (T0 + 2 * DAY, True, 0),
])
def test_blue_clock_starts_when_blue_was_scaled_down(now, removable, left):
    g = dict(group({"a.>": "new"}, journal={"blue_scaled_down_at": str(T0)}), step="complete")
    p = ms.plan(g, now, blue_keep=DAY)
    assert p["blue_scaled_down_at"] == T0 and p["blue_remove_at"] == T0 + DAY
    assert (p["blue_removable"], p["blue_seconds_left"]) == (removable, left)


def test_rollback_left_names_subjects_sources_and_backlogs():
    g = group({"a.>": "new", "b.*": "neither", "c.>": "legacy"}, sources=[{"filter_subject": "a.>"}],
              readers=(True, False))
    g["consumers"]["c0"]["new"].update(behind=5, num_pending=3, num_ack_pending=2)
    left = ms.rollback_left(g)
    assert left == dict(subjects=["a.>", "b.*"], sources=True, stream=True,
                        consumers={"c0": {"pending": 3, "ack_pending": 2}})
    done = ms.rollback_left(group({"a.>": "legacy"}, exists=False, readers=()))
    assert done == dict(subjects=[], sources=False, stream=False, consumers={})


# -- read(): the whole migration, with a cluster stand-in passed in (no patching) -------------------
class Cluster(object):
    """stream_info / consumer_info replies of a legacy stream and two groups' new streams."""

    def __init__(self, streams, consumers=None):
        self.streams, self.consumers = streams, consumers or {}

    def stream_info(self, name):
        return self.streams.get(name)

    def consumer_info(self, stream, name):
        return self.consumers.get((stream, name), {"num_pending": 0, "num_ack_pending": 0, "num_waiting": 1})


GROUPS = [{"phase": 2, "stream": "VENDOR", "subjects": ["vendor.>"], "consumers": [{"name": "v"}]},
          {"phase": 1, "stream": "CORE", "subjects": ["core.>"], "consumers": ["c"]}]


def info(subjects, metadata=None, last_seq=0, sources=None):
    return {"config": {"subjects": subjects, "metadata": metadata or {}, "sources": sources or []},
            "state": {"last_seq": last_seq, "messages": last_seq}}


def test_read_phase_3_decides_from_the_last_cut_over():
    streams = {
        "LEGACY": info([], {"aa.migration.phase": "2"}, last_seq=900),
        "CORE": info(["core.>"], {"aa.migration.phase1.cutover_at": str(T0 - 20 * DAY),
                                  "aa.migration.phase1.cutover_seq": "500",
                                  "aa.migration.phase1.verified_at": str(T0 - 20 * DAY),
                                  "aa.migration.phase1.completed_at": str(T0 - 20 * DAY)}),
        "VENDOR": info(["vendor.>"], {"aa.migration.phase2.cutover_at": str(T0 - 10 * DAY),
                                      "aa.migration.phase2.cutover_seq": "900",
                                      "aa.migration.phase2.blue_scaled_down_at": str(T0 - 10 * DAY)}),
    }
    state = ms.read(Cluster(streams), "LEGACY", GROUPS, now=T0, legacy_retention=14 * DAY, blue_keep=DAY)
    assert list(state["groups"]) == ["1", "2"] and state["groups"]["2"]["phase"] == 2
    assert (state["first_phase"], state["last_phase"], state["last"]["stream"]) == (1, 2, "VENDOR")
    assert state["steps"] == {"1": "complete", "2": "caught_up"} and state["legacy"]["phase"] == 2
    delete = state["legacy_delete"]
    assert delete["ready"] and delete["cutover_at"] == T0 - 10 * DAY and delete["cutover_seq"] == 900
    assert (delete["allowed"], delete["seconds_left"]) == (False, 4 * DAY)  # phase 2 cut over 10 days ago
    assert state["blue"] == dict(scaled_down_at=T0 - 10 * DAY, remove_at=T0 - 9 * DAY, removable=True,
                                 seconds_left=0)
    assert state["unmoved_subjects"] == [] and not state["all_complete"]
    later = ms.read(Cluster(streams), "LEGACY", GROUPS, now=T0 + 4 * DAY, legacy_retention="%d" % (14 * DAY))
    assert later["legacy_delete"]["allowed"] and later["legacy_delete"]["seconds_left"] == 0
    assert ms.group_of(later, "2")["plan"]["delete_allowed"] and ms.group_of(later, 1)["plan"]["complete"]


def test_read_phase_3_never_allowed_before_every_group_is_cut_over():
    streams = {"LEGACY": info(["vendor.>"], {"aa.migration.phase": "1"}, last_seq=900),
               "CORE": info(["core.>"], {"aa.migration.phase1.cutover_at": str(T0 - 30 * DAY),
                                         "aa.migration.phase1.cutover_seq": "500"})}
    state = ms.read(Cluster(streams), "LEGACY", GROUPS, now=T0, legacy_retention=14 * DAY)
    assert state["legacy_delete"]["not_ready_phases"] == [2] and not state["legacy_delete"]["allowed"]
    assert state["unmoved_subjects"] == ["vendor.>"] and state["groups"]["2"]["plan"]["cutover_ahead"]
    assert state["blue"]["removable"] is False


def test_read_a_cut_over_without_its_record_is_not_ready_for_phase_3():
    streams = {"LEGACY": info([], last_seq=900), "CORE": info(["core.>"]), "VENDOR": info(["vendor.>"])}
    state = ms.read(Cluster(streams), "LEGACY", GROUPS, now=T0, legacy_retention=0)
    assert state["legacy_delete"]["not_ready_phases"] == [1, 2] and not state["legacy_delete"]["allowed"]
    assert state["groups"]["1"]["journal_missing"]["aa.migration.phase1.cutover_at"] == str(T0)


@pytest.mark.parametrize("phase", [2, "2", " 2"])
def test_migration_group_takes_the_phase_as_the_command_line_gives_it(phase):
    assert migration_group(GROUPS, phase)["stream"] == "VENDOR"


@pytest.mark.parametrize("phase", [3, "two", None])
def test_migration_group_names_the_phases_there_are(phase):
    with pytest.raises(Exception, match=r"migration_phase=.* is not a phase of migration.groups \(phases: 2, 1\)"):
        migration_group(GROUPS, phase)
