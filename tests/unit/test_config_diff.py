"""config_diff (merge with live, canonical comparison) and the stream module's use of it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import config_diff, stream  # noqa: E402

S = 10 ** 9


# -- config_diff -------------------------------------------------------------------------------
def test_prune_none_is_recursive_and_keeps_falsy_values():
    value = {"a": None, "b": 0, "c": False, "d": {"x": None, "y": ""}, "e": [{"k": None, "v": 1}]}
    assert config_diff.prune_none(value) == {"b": 0, "c": False, "d": {"y": ""}, "e": [{"v": 1}]}


def test_deep_merge_merges_dicts_replaces_lists_and_metadata():
    live = {"subjects": ["a", "b"], "consumer_limits": {"inactive_threshold": 5, "max_ack_pending": 10},
            "metadata": {"_nats.ver": "2.15.1", "owner": "x"}, "unknown_future_field": {"z": 1}}
    merged = config_diff.deep_merge(live, {"subjects": ["c"], "consumer_limits": {"max_ack_pending": 20},
                                           "metadata": {"phase": "1"}})
    assert merged["subjects"] == ["c"]
    assert merged["consumer_limits"] == {"inactive_threshold": 5, "max_ack_pending": 20}
    assert merged["metadata"] == {"phase": "1"}
    assert merged["unknown_future_field"] == {"z": 1}
    # live is not modified, and the merge does not share nested objects with it
    assert live["consumer_limits"]["max_ack_pending"] == 10
    merged["unknown_future_field"]["z"] = 2
    assert live["unknown_future_field"]["z"] == 1


def test_deep_merge_of_nothing():
    assert config_diff.deep_merge(None, {"a": 1}) == {"a": 1}
    assert config_diff.deep_merge({"a": 1}, None) == {"a": 1}


def test_user_and_reserved_metadata():
    meta = {"_nats.ver": "2.15.1", "_nats.level": "1", "owner": "platform"}
    assert config_diff.user_metadata(meta) == {"owner": "platform"}
    assert config_diff.user_metadata(None) == {}
    assert config_diff.merge_metadata(meta, {"phase": "2"}) == {"_nats.ver": "2.15.1", "_nats.level": "1",
                                                                "phase": "2"}
    # a task can not overwrite what the server reserved
    assert config_diff.merge_metadata(meta, {"_nats.ver": "9"})["_nats.ver"] == "2.15.1"


def test_canonical_drops_defaults_empties_ignored_and_reserved():
    cfg = {"max_msgs": -1, "max_bytes": 1024, "sealed": False, "description": "", "placement": {},
           "consumer_limits": {}, "created": "now", "metadata": {"_nats.ver": "2.15.1"}, "mirror": None,
           "subjects": ["b", "a"]}
    out = config_diff.canonical(cfg, defaults={"max_msgs": -1, "max_bytes": -1}, unordered=("subjects",),
                                ignore=("created",))
    assert out == {"max_bytes": 1024, "subjects": ["a", "b"]}


def test_canonical_keeps_order_of_ordered_lists():
    out = config_diff.canonical({"backoff": [3, 1, 2]})
    assert out == {"backoff": [3, 1, 2]}


def test_changed_fields_is_sorted_and_symmetric():
    a = {"max_age": 1, "subjects": ["x"], "compression": "s2"}
    b = {"max_age": 2, "subjects": ["x"], "description": "d"}
    assert config_diff.changed_fields(a, b) == ["compression", "description", "max_age"]
    assert config_diff.changed_fields(b, a) == ["compression", "description", "max_age"]
    assert config_diff.changed_fields(a, dict(a)) == []


# -- the stream module's canonical form --------------------------------------------------------
def live_2_15(**over):
    """What nats-server 2.15 reports for a stream created with only a name and subjects."""
    cfg = {"name": "S", "subjects": ["s.>"], "retention": "limits", "max_consumers": -1, "max_msgs": -1,
           "max_bytes": -1, "max_age": 0, "max_msgs_per_subject": -1, "max_msg_size": -1, "discard": "old",
           "storage": "file", "num_replicas": 1, "duplicate_window": 120 * S, "compression": "none",
           "allow_direct": False, "mirror_direct": False, "sealed": False, "deny_delete": False,
           "deny_purge": False, "allow_rollup_hdrs": False, "consumer_limits": {}, "allow_msg_ttl": False,
           "metadata": {"_nats.level": "0", "_nats.req.level": "0", "_nats.ver": "2.15.1"}}
    cfg.update(over)
    return cfg


def test_stream_canonical_equals_a_minimal_task_config():
    assert stream.canonical(live_2_15()) == stream.canonical({"name": "S", "subjects": ["s.>"]})


def test_stream_canonical_notices_real_differences():
    assert stream.canonical(live_2_15(max_age=3600 * S)) != stream.canonical(live_2_15())
    assert stream.canonical(live_2_15(subjects=["s.>", "t.>"])) != stream.canonical(live_2_15())
    assert stream.canonical(live_2_15(metadata={"owner": "x"})) != stream.canonical(live_2_15())


def test_stream_canonical_subject_order_does_not_matter():
    assert stream.canonical(live_2_15(subjects=["b", "a"])) == stream.canonical(live_2_15(subjects=["a", "b"]))


def test_stream_canonical_empty_subjects_mean_the_stream_name_unless_sourced():
    assert stream.canonical(live_2_15(subjects=["S"])) == stream.canonical(live_2_15(subjects=[]))
    sourced = {"name": "S", "sources": [{"name": "O"}]}
    assert "subjects" not in stream.canonical(sourced)


def test_stream_canonical_duplicate_window_default_is_clamped_to_max_age():
    # the server stores min(2m, max_age) when no window is asked for
    assert "duplicate_window" not in stream.canonical(live_2_15(max_age=60 * S, duplicate_window=60 * S))
    assert "duplicate_window" not in stream.canonical(live_2_15(duplicate_window=120 * S))
    assert stream.canonical(live_2_15(duplicate_window=30 * S))["duplicate_window"] == 30 * S


def test_stream_canonical_republish_src_defaults_to_all():
    a = live_2_15(republish={"src": ">", "dest": "rp.>"})
    b = {"name": "S", "subjects": ["s.>"], "republish": {"dest": "rp.>"}}
    assert stream.canonical(a) == stream.canonical(b)


def test_stream_canonical_sealed_forces_like_the_server():
    live = live_2_15(sealed=True, max_age=0, discard="new", deny_delete=True, deny_purge=True)
    asked = {"name": "S", "subjects": ["s.>"], "sealed": True, "max_age": 14 * 86400 * S}
    assert stream.canonical(live) == stream.canonical(asked)


def test_stream_canonical_opt_start_time_compared_in_utc():
    a = {"name": "S", "sources": [{"name": "O", "opt_start_time": "2025-10-01T12:00:00.123456789Z"}]}
    b = {"name": "S", "sources": [{"name": "O", "opt_start_time": "2025-10-01T14:00:00.123456+02:00"}]}
    assert stream.canonical(a) == stream.canonical(b)


@pytest.mark.parametrize("a, b, collide", [
    ("vendor.>", "vendor.oura.*", True),
    ("vendor.>", "vendor.>", True),
    ("vendor.>", "vendor", False),
    ("vendor.*", "vendor.oura.webhook", False),
    ("vendor.*.webhook", "vendor.oura.*", True),
    ("*.oura", "vendor.*", True),
    (">", "anything.at.all", True),
    ("dlq.>", "vendor.>", False),
    ("athlete-ally.>", "sleep.*", False),
    ("a.b", "a.b", True),
    ("a.b", "a.c", False),
    ("a.b.>", "a.b", False),
])
def test_subjects_collide_is_wildcard_aware(a, b, collide):
    for first, second in ((a, b), (b, a)):  # symmetric: both argument orders
        assert stream.subjects_collide(first, second) is collide


def test_desired_config_keeps_live_fields_and_reserved_metadata():
    live = live_2_15(compression="s2", metadata={"_nats.ver": "2.15.1", "owner": "x"}, future_field=7)
    params = {"name": "S", "metadata": {"phase": "1"}, "metadata_merge": True}
    desired = stream.desired_config(live, {"max_age": 3600 * S}, params)
    assert desired["compression"] == "s2" and desired["future_field"] == 7
    assert desired["metadata"] == {"_nats.ver": "2.15.1", "owner": "x", "phase": "1"}
    replaced = stream.desired_config(live, {}, dict(params, metadata_merge=False))
    assert replaced["metadata"] == {"_nats.ver": "2.15.1", "phase": "1"}


def test_desired_config_lets_a_derived_duplicate_window_follow_max_age():
    desired = stream.desired_config(live_2_15(), {"max_age": 60 * S}, {"name": "S"})
    assert "duplicate_window" not in desired  # the server derives min(2m, 1m) again
    kept = stream.desired_config(live_2_15(duplicate_window=30 * S), {"max_age": 60 * S}, {"name": "S"})
    assert kept["duplicate_window"] == 30 * S


def test_immutable_violations_name_field_live_and_asked():
    live = live_2_15(deny_delete=True, mirror=None)
    desired = dict(live, storage="memory", retention="workqueue", deny_delete=False)
    problems = stream.immutable_violations(live, desired, (2, 15, 1))
    assert any(p.startswith("storage: live 'file', asked 'memory'") for p in problems)
    assert any(p.startswith("retention: live 'limits', asked 'workqueue'") for p in problems)
    assert any(p.startswith("deny_delete: live True, asked False") for p in problems)
    assert stream.immutable_violations(live, dict(live, retention="interest"), (2, 15, 1)) == []


def test_immutable_violations_depend_on_server_version():
    live = live_2_15()
    more = dict(live, max_consumers=10)
    assert stream.immutable_violations(live, more, (2, 15, 1)) == []
    assert [p.split(":")[0] for p in stream.immutable_violations(live, more, (2, 10, 26))] == ["max_consumers"]
    ttl = dict(live, allow_msg_ttl=True)
    assert stream.immutable_violations(live, ttl, (2, 15, 1)) == []
    assert stream.immutable_violations(live, ttl, (2, 11, 4))
    assert stream.immutable_violations(ttl, live, (2, 15, 1))  # never back off


def test_task_settings_maps_options_and_refuses_bad_input():
    params = {"name": "AA_DLQ", "subjects": ["dlq.>"], "max_age": "14d", "duplicate_window": "2m",
              "replicas": 3, "compression": "s2", "consumer_limits": {"inactive_threshold": "5m",
                                                                      "max_ack_pending": None}}
    out = stream.task_settings(params)
    assert out == {"subjects": ["dlq.>"], "max_age": 14 * 86400 * S, "duplicate_window": 120 * S,
                   "num_replicas": 3, "compression": "s2", "consumer_limits": {"inactive_threshold": 300 * S}}
    for bad, text in (({"replicas": 0}, "replicas"), ({"replicas": 6}, "replicas"),
                      ({"max_age": "soon"}, "max_age"), ({"name": "a.b"}, "invalid")):
        with pytest.raises(stream.JetStreamError) as err:
            stream.task_settings(dict(params, **bad))
        assert text in str(err.value) and "\n" not in str(err.value)


def test_immutable_violations_refuse_mirror_changes_but_not_equal_mirrors():
    live = {"name": "M", "mirror": {"name": "O", "opt_start_seq": 0}}
    assert stream.immutable_violations(live, {"name": "M", "mirror": {"name": "O"}}, (2, 15, 1)) == []
    problems = stream.immutable_violations(live, {"name": "M", "mirror": {"name": "P"}}, (2, 15, 1))
    assert len(problems) == 1 and problems[0].startswith("mirror: live {'name': 'O'")
    assert stream.immutable_violations({"name": "S"}, {"name": "S", "mirror": {"name": "O"}}, (2, 15, 1))
