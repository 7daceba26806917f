"""DLQ replay (module_utils/dlq_replay.py): header/time parsing, the filters, the replay id and headers, and the run
against a fake JetStream: check mode sends nothing, a dead letter is deleted only after a stream other than the DLQ
acknowledged its republish, a duplicate ack (run killed before the delete) still deletes, the walk ends at the DLQ's
last seq as read at the start."""

from __future__ import annotations

import base64
import datetime
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import dlq_replay as dr  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import ApiError, JetStreamError  # noqa: E402

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 4, 21, 0, 0, tzinfo=UTC)
PARAMS = dict(stream="AA_DLQ", original_subject_header="X-Original-Subject", reason_header="X-Failure-Reason",
              identity_header="Nats-Msg-Id", id_prefix="replay:", strip_headers=["X-Consumer", "X-Deliveries"],
              subjects=[], since=None, up_to=None, reason=None, max_messages=0, publish_retries=2, retry_delay=0.0,
              retry_max_delay=0.0, progress_file=None, progress_every=2)


def letter(seq, subject="athlete-ally.hrv.raw-received", reason="database: connection refused",
           time="2026-12-04T20:30:00.123456789Z", event="e%d"):
    headers = {"Nats-Msg-Id": "dlq:AA_CORE_HOT:%d" % (1000 + seq), "X-Failure-Reason": reason, "X-Consumer": "c",
               "X-Deliveries": "5", "Content-Type": "application/json"}
    if subject:
        headers["X-Original-Subject"] = subject
    text = "NATS/1.0\r\n" + "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
    return {"seq": seq, "subject": "dlq.%s" % subject, "time": time,
            "hdrs": base64.b64encode(text.encode()).decode(),
            "data": base64.b64encode(json.dumps({"eventId": event % seq}).encode()).decode()}


class FakeJs(object):
    """The DLQ as a dict seq -> message; a target stream that dedupes by Nats-Msg-Id; a journal of the calls."""

    where = "fake:4222"

    def __init__(self, letters, extra_after_start=(), fail_publish=False, ack_stream="AA_CORE_HOT",
                 deny_delete=False):
        self.dlq = dict((m["seq"], m) for m in letters)
        self.last = max(self.dlq) if self.dlq else 0
        self.extra = list(extra_after_start)
        self.fail_publish = fail_publish
        self.ack_stream = ack_stream
        self.deny_delete = deny_delete
        self.ids, self.calls = {}, []

    def stream_info(self, name):
        info = {"config": {"subjects": ["dlq.>"], "deny_delete": self.deny_delete},
                "state": {"first_seq": min(self.dlq or [1]), "last_seq": self.last}}
        for m in self.extra:  # dead-lettered while the replay runs: after the last seq read at the start
            self.dlq[m["seq"]] = m
        return info

    def request(self, api, payload=None, timeout=None, recheck=None):
        self.calls.append((api, payload))
        if api.startswith("STREAM.MSG.GET."):
            after = sorted(s for s in self.dlq if s >= payload["seq"])
            if not after:
                raise ApiError(api, {"code": 404, "err_code": dr.NO_MESSAGE_FOUND, "description": "no message found"})
            return {"message": self.dlq[after[0]]}
        if api.startswith("STREAM.MSG.DELETE."):
            self.dlq.pop(payload["seq"])
            return {"success": True}
        raise AssertionError(api)

    def raw_request(self, subject, data, headers=None, timeout=None):
        self.calls.append(("PUB " + subject, headers))
        if self.fail_publish:
            raise JetStreamError("no stream or service listens on %s" % subject)
        mid = headers[dr.MSG_ID]
        dup = mid in self.ids
        self.ids.setdefault(mid, len(self.ids) + 1)
        ack = {"stream": self.ack_stream, "seq": self.ids[mid]}
        if dup:
            ack["duplicate"] = True
        return SimpleNamespace(data=json.dumps(ack).encode())


def run(js, check=False, **params):
    module = SimpleNamespace(params=dict(PARAMS, **params), check_mode=check)
    return dr.Replay(module, js, sleep=lambda s: None, now=NOW).run()


def test_headers_are_parsed_first_value_wins_and_looked_up_case_insensitively():
    h = dr.parse_headers(base64.b64encode(b"NATS/1.0\r\nA: 1\r\nA: 2\r\nX-Original-Subject: a.b\r\n\r\n").decode())
    assert h == {"A": "1", "X-Original-Subject": "a.b"}
    assert dr.header(h, "x-original-subject") == "a.b" and dr.header(h, "missing") is None
    assert dr.parse_headers(None) == {}


def test_server_times_with_nanoseconds_and_bounds_as_time_or_duration_ago():
    want = datetime.datetime(2026, 12, 4, 20, 30, 0, 123456, tzinfo=UTC)
    assert dr.parse_time("2026-12-04T20:30:00.123456789Z") == want
    assert dr.parse_time("2026-12-04T21:30:00+01:00") == datetime.datetime(2026, 12, 4, 20, 30, tzinfo=UTC)
    assert dr.parse_bound("2h", "since", NOW) == NOW - datetime.timedelta(hours=2)
    assert dr.parse_bound("2026-12-04T20:00:00Z", "since", NOW) == datetime.datetime(2026, 12, 4, 20, tzinfo=UTC)
    assert dr.parse_bound(None, "since", NOW) is None
    with pytest.raises(JetStreamError, match="^since: 'yesterday' is neither a time"):
        dr.parse_bound("yesterday", "since", NOW)


def test_filters_subject_wildcards_time_range_and_reason():
    base = dict(seq=1, headers={"X-Failure-Reason": "database: connection refused"},
                time=datetime.datetime(2026, 12, 4, 20, 30, tzinfo=UTC), original_subject="athlete-ally.hrv.raw")
    f = dict(dlq_subjects=["dlq.>"], reason_header="X-Failure-Reason")
    assert dr.select(base, f) == (True, None)
    assert dr.select(base, dict(f, subjects=["athlete-ally.>"])) == (True, None)
    assert dr.select(base, dict(f, subjects=["athlete-ally.*.raw", "vendor.>"])) == (True, None)
    assert dr.select(base, dict(f, subjects=["vendor.>", "athlete-ally.*"])) == (False, "subject")
    assert dr.select(base, dict(f, since=NOW - datetime.timedelta(minutes=20))) == (False, "time")
    assert dr.select(base, dict(f, until=NOW - datetime.timedelta(minutes=40))) == (False, "time")
    assert dr.select(base, dict(f, since=NOW - datetime.timedelta(hours=1), until=NOW)) == (True, None)
    assert dr.select(base, dict(f, reason="DATABASE")) == (True, None)
    assert dr.select(base, dict(f, reason="poison")) == (False, "reason")


def test_dead_letters_that_cannot_be_replayed():
    f = dict(dlq_subjects=["dlq.>"])
    when = datetime.datetime(2026, 12, 4, 20, 30, tzinfo=UTC)
    assert dr.select(dict(seq=1, headers={}, time=when, original_subject=None), f)[0] is False
    assert "captured by the DLQ" in dr.select(dict(seq=1, headers={}, time=when, original_subject="dlq.x"), f)[1]
    assert "not a publishable" in dr.select(dict(seq=1, headers={}, time=when, original_subject="a.*"), f)[1]


def test_the_replay_id_derives_from_the_dead_letter_never_the_original_publish():
    l1 = dict(seq=7, headers={"Nats-Msg-Id": "dlq:AA_CORE_HOT:812", "X-Original-Subject": "a.b"})
    assert dr.replay_id(l1, "AA_DLQ", PARAMS) == "replay:dlq:AA_CORE_HOT:812"
    assert dr.replay_id(dict(seq=7, headers={}), "AA_DLQ", PARAMS) == "replay:AA_DLQ:7"
    out = dr.replay_headers(dict(l1, headers=dict(l1["headers"], **{
        "X-Failure-Reason": "x", "X-Consumer": "c", "Nats-Expected-Stream": "S", "Content-Type": "json"})),
        "replay:dlq:AA_CORE_HOT:812", PARAMS)
    assert out == {"Nats-Msg-Id": "replay:dlq:AA_CORE_HOT:812", "Content-Type": "json"}


def test_check_mode_lists_and_sends_nothing():
    js = FakeJs([letter(1), letter(2, subject="vendor.oura.webhook.received")])
    res = run(js, check=True)
    assert [m["subject"] for m in res["messages"]] == ["athlete-ally.hrv.raw-received", "vendor.oura.webhook.received"]
    assert res["matched"] == 2 and res["replayed"] == res["deleted"] == 0 and res["changed"]
    assert not [c for c in js.calls if c[0].startswith(("PUB", "STREAM.MSG.DELETE"))]
    assert sorted(js.dlq) == [1, 2]


def test_each_dead_letter_is_republished_then_deleted_and_a_rerun_sends_nothing():
    js = FakeJs([letter(1), letter(3), letter(4, subject="vendor.oura.webhook.received")])
    res = run(js, subjects=["athlete-ally.>"])
    assert res["replayed"] == res["deleted"] == 2 and sorted(js.dlq) == [4]
    order = [c[0].split(".")[2] if c[0].startswith("STREAM") else "PUB" for c in js.calls if "GET" not in c[0]]
    assert order == ["PUB", "DELETE", "PUB", "DELETE"], "each delete right after its acknowledged republish"
    again = run(js, subjects=["athlete-ally.>"])
    assert again["matched"] == 0 and not again["changed"]


def test_a_run_killed_between_ack_and_delete_reruns_as_a_duplicate_then_deletes():
    js = FakeJs([letter(1)])
    js.ids["replay:dlq:AA_CORE_HOT:1001"] = 1  # the first run's republish was stored, its delete never sent
    res = run(js)
    assert res["duplicates"] == 1 and res["replayed"] == 0 and res["deleted"] == 1 and not js.dlq


def test_no_delete_without_an_ack_and_the_error_is_one_line():
    js = FakeJs([letter(1)], fail_publish=True)
    with pytest.raises(JetStreamError) as exc:
        run(js)
    assert "\n" not in str(exc.value) and "seq 1" in str(exc.value) and "dead letter is kept" in str(exc.value)
    assert sorted(js.dlq) == [1] and not [c for c in js.calls if c[0].startswith("STREAM.MSG.DELETE")]


def test_an_ack_from_the_dlq_itself_is_refused_and_nothing_deleted():
    js = FakeJs([letter(1)], ack_stream="AA_DLQ")
    with pytest.raises(JetStreamError, match="stored by the DLQ itself"):
        run(js)
    assert sorted(js.dlq) == [1]


def test_the_walk_ends_at_the_last_seq_read_at_the_start():
    js = FakeJs([letter(1), letter(2)], extra_after_start=[letter(9)])
    res = run(js)
    assert res["deleted"] == 2 and res["last_seq"] == 2 and sorted(js.dlq) == [9]


def test_unreplayable_letters_stay_and_are_counted_and_max_messages_stops():
    js = FakeJs([letter(1, subject=None), letter(2), letter(3)])
    res = run(js, max_messages=1)
    assert res["unreplayable"] == 1 and res["unreplayable_seqs"] == [1] and res["deleted"] == 1
    assert sorted(js.dlq) == [1, 3]


def test_progress_lines(tmp_path):
    path = tmp_path / "progress.log"
    run(FakeJs([letter(s) for s in range(1, 6)]), progress_file=str(path))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and lines[-1].endswith("done") and "deleted=5" in lines[-1]
    assert "dlq_seq=5/5" in lines[-1] and "dlq_seq=2/5" in lines[0]


def test_bad_filters_fail_in_one_line():
    with pytest.raises(JetStreamError, match=r"^subjects\[1\]: may have '>' only"):
        run(FakeJs([letter(1)]), subjects=["a.>", "a.>.b"])
    with pytest.raises(JetStreamError, match="reason_header"):
        run(FakeJs([letter(1)]), reason="x", reason_header=None)


def test_a_missing_original_subject_header_names_the_inventory_key():
    with pytest.raises(JetStreamError, match=r"^original_subject_header is empty: set migration\.dlq\.replay\."):
        run(FakeJs([letter(1)]), original_subject_header="")


def test_the_time_range_options_select_by_the_time_the_dead_letter_was_stored():
    js = FakeJs([letter(1, time="2026-12-04T19:00:00Z"), letter(2, time="2026-12-04T20:30:00Z")])
    assert [m["dlq_seq"] for m in run(js, check=True, up_to="1h")["messages"]] == [1]
    assert [m["dlq_seq"] for m in run(js, check=True, since="1h")["messages"]] == [2]
    assert run(js, check=True, since="2026-12-04T19:30:00Z", up_to="2026-12-04T20:00:00Z")["matched"] == 0


def test_a_dlq_that_denies_deletes_is_refused_before_anything_is_sent_but_can_be_listed():
    js = FakeJs([letter(1)], deny_delete=True)
    with pytest.raises(JetStreamError, match="^DLQ stream AA_DLQ denies message deletes"):
        run(js)
    assert not [c for c in js.calls if c[0].startswith("PUB")]
    assert run(js, check=True)["matched"] == 1
