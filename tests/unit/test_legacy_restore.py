"""A stream's restore point (module_utils/legacy_restore.py): what is kept, how it encodes, what a create sends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import legacy_restore as lr  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError  # noqa: E402

INFO = {"config": {"name": "L", "subjects": ["L"], "max_age": 5, "first_seq": 0,
                   "metadata": {"_nats.ver": "2.15.1", "aa.migration.phase": "2"}},
        "state": {"last_seq": 41}}
CONSUMERS = [{"config": {"durable_name": "z", "metadata": {"_nats.level": "1"}}},
             {"config": {"durable_name": "a", "deliver_policy": "all"}}]


def test_snapshot_keeps_what_a_create_needs_without_reserved_metadata_or_live_fields():
    snap = lr.snapshot(INFO, CONSUMERS)
    assert snap["config"] == {"name": "L", "subjects": ["L"], "max_age": 5, "metadata": {"aa.migration.phase": "2"}}
    assert snap["last_seq"] == 41
    assert [c["durable_name"] for c in snap["consumers"]] == ["a", "z"]  # sorted: the same record encodes the same
    assert "metadata" not in snap["consumers"][1]


def test_encode_is_stable_and_round_trips():
    one = lr.encode(lr.snapshot(INFO, CONSUMERS), "N")
    two = lr.encode(lr.snapshot(INFO, list(reversed(CONSUMERS))), "N")
    assert one == two and lr.decode(one, "N") == json.loads(one)


def test_encode_refuses_a_record_over_its_share_of_the_metadata_in_one_line():
    big = [{"config": {"durable_name": "c%d" % i, "description": "x" * 500}} for i in range(80)]
    with pytest.raises(JetStreamError) as err:
        lr.encode(lr.snapshot(INFO, big), "NEW_A")
    text = str(err.value)
    assert "\n" not in text and "80 consumers" in text and "NEW_A" in text and "nothing was recorded" in text


@pytest.mark.parametrize("text", ["not json", "[]", '{"config": {}}', '{"consumers": []}'])
def test_decode_refuses_what_is_not_a_record(text):
    with pytest.raises(JetStreamError, match="not a stream record"):
        lr.decode(text, "N metadata k")


@pytest.mark.parametrize("version, first_seq", [((2, 15, 1), 42), ((2, 10, 0), 42), ((2, 9, 25), None)])
def test_create_config_continues_the_sequence_where_the_server_can(version, first_seq):
    cfg = lr.create_config(lr.snapshot(INFO, []), ["a.>"], version)
    assert cfg["subjects"] == ["a.>"] and cfg.get("first_seq") == first_seq


def test_create_config_without_free_subjects_sends_none():
    # The server then listens on the stream's own name; the group rollbacks add the subjects back.
    assert lr.create_config(lr.snapshot(INFO, []), [], (2, 15, 1))["subjects"] == []


@pytest.mark.parametrize("version, api", [((2, 15, 1), "CONSUMER.CREATE.L.a"),
                                          ((2, 8, 4), "CONSUMER.DURABLE.CREATE.L.a")])
def test_consumer_request(version, api):
    name, got, body = lr.consumer_request("L", {"durable_name": "a"}, version)
    assert (name, got) == ("a", api) and body == {"stream_name": "L", "config": {"durable_name": "a"},
                                                  "action": "create"}
