"""The migration's derived step, placement, readers and journal rules (module_utils/migration_state.py)."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.filter.migration import journal_entries, shadow_sources  # noqa: E402
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


def test_cutover_journal_goes_into_both_updates():
    src, dst = ms.move_journal("cutover", 2)(41)
    assert src["aa.migration.phase"] == 2 and "aa.migration.phase2.cutover_at" in src
    assert dst["aa.migration.phase2.cutover_seq"] == 41 and dst["aa.migration.phase2.cutover_at"] == \
        src["aa.migration.phase2.cutover_at"]
    assert "aa.migration.phase2.cutover_seq" not in ms.move_journal("cutover", 2)(None)[1]


def test_rollback_journal_steps_the_phase_back():
    src, dst = ms.move_journal("rollback", 2)(None)
    assert "aa.migration.phase2.rolled_back_at" in src
    assert dst["aa.migration.phase"] == 1 and "aa.migration.phase2.rolled_back_at" in dst


def stream_info(metadata=None, last_seq=0):
    return {"config": {"metadata": metadata or {}}, "state": {"last_seq": last_seq}}


def test_missing_cutover_record_is_derived_from_the_streams():
    missing = ms.missing_move_record("cutover", 1, stream_info(last_seq=812), stream_info())
    assert missing["aa.migration.phase1.cutover_seq"] == "812"
    assert int(missing["aa.migration.phase1.cutover_at"]) >= ms.now_epoch() - 5
    done = stream_info({"aa.migration.phase1.cutover_seq": "7", "aa.migration.phase1.cutover_at": "9"})
    assert ms.missing_move_record("cutover", 1, stream_info(last_seq=812), done) == {}


def test_missing_rollback_record_only_when_older_than_the_cutover():
    new = stream_info({"aa.migration.phase2.cutover_at": "100"})
    assert ms.missing_move_record("rollback", 2, new, stream_info({"aa.migration.phase2.rolled_back_at": "120"})) == {}
    stale = ms.missing_move_record("rollback", 2, new, stream_info({"aa.migration.phase2.rolled_back_at": "90"}))
    assert stale["aa.migration.phase"] == "1" and "aa.migration.phase2.rolled_back_at" in stale


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
