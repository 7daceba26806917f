"""The lab exporter's journal reading (lab/exporter.py): which groups count as cut over, from the same journal keys
the modules write (docs/JOURNAL.md); the live exporter is scraped in tests/monitoring/test_lab_monitoring.py."""

from __future__ import annotations

import sys

from tests.support.ansible_run import REPO

sys.path.insert(0, str(REPO))
from lab.exporter import cut_over_phases, journal  # noqa: E402


def test_journal_entries_are_timestamps_by_phase_and_event():
    meta = {"aa.migration.phase1.cutover_at": "1700000000", "aa.migration.phase1.cutover_seq": "42",
            "aa.migration.phase2.verified_at": "1700000100", "aa.migration.phase": "1", "_nats.ver": "2.15.1",
            "aa.migration.phase2.bad_at": "not-a-number"}
    assert sorted(journal(meta)) == [("1", "cutover_at", 1700000000.0), ("2", "verified_at", 1700000100.0)]
    assert journal(None) == []


def test_a_group_is_cut_over_until_a_later_rollback():
    legacy = {"aa.migration.phase1.cutover_at": "100", "aa.migration.phase2.cutover_at": "200",
              "aa.migration.phase2.rolled_back_at": "250"}
    new = {"1": {"aa.migration.phase1.cutover_seq": "42"},
           "2": {"aa.migration.phase2.cutover_seq": "77"}}
    assert cut_over_phases(legacy, new) == {"1": 42}          # phase 2 was rolled back after its cut-over
    legacy["aa.migration.phase2.cutover_at"] = "300"           # ... and cut over again
    new["2"]["aa.migration.phase2.cutover_seq"] = "90"
    assert cut_over_phases(legacy, new) == {"1": 42, "2": 90}
    assert cut_over_phases({}, {"1": {}}) == {}                 # no record: nothing to compare against
