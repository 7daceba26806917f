"""The journal's format (module_utils/journal.py, docs/JOURNAL.md): keys, reading one phase back, the records a
move writes with itself and the ones derived when a move happened without them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.filter.migration import journal_fields  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils import journal  # noqa: E402

NOW = 1_800_000_000


def stream_info(metadata=None, last_seq=0):
    return {"config": {"metadata": metadata or {}}, "state": {"last_seq": last_seq}}


def test_keys_round_trip_and_other_keys_are_not_the_journals():
    key = journal.journal_key("2", "cutover_at")
    assert key == "aa.migration.phase2.cutover_at" and journal.parse_key(key) == (2, "cutover_at")
    for other in ("aa.migration.phase", "aa.migration.phasex.cutover_at", "aa.migration.phase2", "_nats.ver", 7):
        assert journal.parse_key(other) is None


def test_one_phase_read_back_and_phase_12_is_not_phase_1():
    meta = {"aa.migration.phase1.cutover_at": "100", "aa.migration.phase12.cutover_at": "900",
            "aa.migration.phase": "1", "_nats.level": "1"}
    assert journal.fields(meta, 1) == {"cutover_at": "100"}
    assert journal.journal_of(stream_info(meta), "12") == {"cutover_at": "900"}
    assert journal.journal_of(None, 1) == {} and journal.legacy_phase(meta) == 1
    assert journal_fields(meta, 12) == {"cutover_at": "900"}


def test_entries_are_strings_and_times_skip_what_is_not_a_time():
    assert journal.entries({"verified_at": 5}, 2) == {"aa.migration.phase2.verified_at": "5"}
    meta = {"aa.migration.phase2.verified_at": "200", "aa.migration.phase1.cutover_at": "100",
            "aa.migration.phase1.cutover_seq": "42", "aa.migration.phase2.bad_at": "not-a-number"}
    assert journal.times(meta) == [(1, "cutover_at", 100), (2, "verified_at", 200)]


@pytest.mark.parametrize("value, seconds", [("1700000000", 1700000000), ("1700000000.7", 1700000000), (None, 0),
                                            ("", 0), ("soon", 0)])
def test_a_time_that_is_not_a_number_counts_as_absent(value, seconds):
    assert journal.journal_time({"cutover_at": value}, "cutover_at") == seconds


def test_cutover_journal_goes_into_both_updates():
    src, dst = journal.move_journal("cutover", 2, now=NOW)(41)
    assert src == {"aa.migration.phase": 2, "aa.migration.phase2.cutover_at": NOW}
    assert dst == {"aa.migration.phase2.cutover_at": NOW, "aa.migration.phase2.cutover_seq": 41}
    assert "aa.migration.phase2.cutover_seq" not in journal.move_journal("cutover", 2, now=NOW)(None)[1]


def test_rollback_journal_steps_the_phase_back():
    src, dst = journal.move_journal("rollback", 2, now=NOW)(None)
    assert src == {"aa.migration.phase2.rolled_back_at": NOW}
    assert dst == {"aa.migration.phase2.rolled_back_at": NOW, "aa.migration.phase": 1}


def test_missing_cutover_record_is_derived_from_the_streams():
    missing = journal.missing_move_record("cutover", 1, stream_info(last_seq=812), stream_info(), now=NOW)
    assert missing == {"aa.migration.phase1.cutover_seq": "812", "aa.migration.phase1.cutover_at": str(NOW)}
    done = stream_info({"aa.migration.phase1.cutover_seq": "7", "aa.migration.phase1.cutover_at": "9"})
    assert journal.missing_move_record("cutover", 1, stream_info(last_seq=812), done, now=NOW) == {}


def test_missing_rollback_record_only_when_older_than_the_cutover():
    new = stream_info({"aa.migration.phase2.cutover_at": "100"})
    back = stream_info({"aa.migration.phase2.rolled_back_at": "120"})
    assert journal.missing_move_record("rollback", 2, new, back, now=NOW) == {}
    stale = journal.missing_move_record("rollback", 2, new, stream_info({"aa.migration.phase2.rolled_back_at": "90"}),
                                        now=NOW)
    assert stale == {"aa.migration.phase2.rolled_back_at": str(NOW), "aa.migration.phase": "1"}


def test_rollback_filter_writes_what_the_move_writes():
    from ansible_collections.athlete_ally.nats.plugins.filter.migration import journal_rollback
    out = journal_rollback("2")
    assert set(out) == {"aa.migration.phase2.rolled_back_at", "aa.migration.phase"} and out["aa.migration.phase"] == "1"
    assert journal.number(out["aa.migration.phase2.rolled_back_at"]) > 0
    with pytest.raises(Exception, match="phase number"):
        journal_rollback("two")
