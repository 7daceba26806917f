"""The lab exporter's journal reading (lab/exporter.py): which groups count as cut over, from the same journal keys
the modules write (docs/JOURNAL.md); the live exporter is scraped in tests/monitoring/test_lab_monitoring.py."""

from __future__ import annotations

import sys

from lab.ansible_run import REPO

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


class _Poller(object):
    """What Collector reads from the poller: a snapshot of one stream with a source and a consumer."""

    def __init__(self):
        import threading
        from lab.exporter import Snapshot
        self.lock = threading.Lock()
        self.migration = {"legacy": {"stream": "EVENTS"}}
        self.snap = Snapshot()
        self.snap.up = 1.0
        consumer = {"name": "worker", "num_pending": 7, "num_ack_pending": 2, "num_redelivered": 1}
        info = {"state": {"messages": 10, "last_seq": 12}, "sources": [{"name": "EVENTS", "lag": 3}], "config": {}}
        self.snap.streams = {"NEW": {"at": 0, "consumers": [consumer], "info": info}}


def scrape(convention):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from lab.exporter import Collector, conventions
    registry = CollectorRegistry()
    registry.register(Collector(_Poller(), conventions()[convention]))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_exporter_emits_each_conventions_names_and_labels_and_nothing_lab_only_for_the_rules():
    surveyor = scrape("nats-surveyor")
    assert surveyor[("nats_consumer_num_pending", (("consumer_name", "worker"), ("stream", "NEW")))] == 7
    assert surveyor[("nats_stream_last_seq", (("stream", "NEW"),))] == 12
    assert not [k for k in surveyor if "source_lag" in k[0]]  # surveyor reports no sources
    exporter = scrape("prometheus-nats-exporter")
    assert exporter[("jetstream_consumer_num_ack_pending", (("consumer_name", "worker"), ("stream_name", "NEW")))] == 2
    assert exporter[("jetstream_stream_source_lag", (("source_name", "EVENTS"), ("stream_name", "NEW")))] == 3
    assert not [k for k in exporter if k[0].startswith("nats_")]
    assert not [k for k in list(surveyor) + list(exporter) if "superseded" in k[0]]
