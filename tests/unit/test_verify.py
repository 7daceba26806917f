"""The verification chain (module_utils/verify.py) with fakes for HTTP, the database and JetStream: the path and
the answer, the row polled first and bounded, the drain up to the event's own seq after the cut-over and a full
drain before it, the metric summed and the legacy state read only after it, and one-line failures carrying the
evidence gathered so far."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import verify  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import ApiError, JetStreamError  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.prometheus import prom_sum  # noqa: E402
from tests.support.fake_clock import FakeClock  # noqa: E402

METRICS = """# TYPE normalize_hrv_messages_total counter
normalize_hrv_messages_total{result="success",stream="AA_CORE_HOT"} 3.0
normalize_hrv_messages_total{result="success",stream="ATHLETE_ALLY_EVENTS"} 40.0
normalize_hrv_messages_total{result="retry",stream="AA_CORE_HOT"} 1.0
"""


def consumer(delivered_stream, floor_stream, pending=0, ack_pending=0, seq=7):
    return {"num_pending": pending, "num_ack_pending": ack_pending, "num_redelivered": 0,
            "delivered": {"consumer_seq": seq, "stream_seq": delivered_stream},
            "ack_floor": {"consumer_seq": seq if not ack_pending else seq - 1, "stream_seq": floor_stream}}


class FakeJs(object):
    where = "nats://fake:4222"

    def __init__(self, infos=None, publish_reply=None, messages=None, last_seq=0):
        self.infos = list(infos or [])  # consumer infos in order; the last one repeats
        self.consumer_reads = []
        self.publish_reply = publish_reply
        self.published = []
        self.last_seq = last_seq
        # the new stream's messages on the subject: {seq: event id}; None: the event wherever it is first looked for
        self.messages = messages
        self.gets = []

    def consumer_info(self, stream, name):
        self.consumer_reads.append((stream, name))
        return self.infos.pop(0) if len(self.infos) > 1 else self.infos[0]

    def stream_info(self, stream):
        return {"config": {"name": stream}, "state": {"last_seq": self.last_seq}}

    def request(self, api, body):
        """STREAM.MSG.GET with next_by_subj: the first message at or after body["seq"]."""
        self.gets.append((api, body))
        messages = self.messages if self.messages is not None else {body["seq"]: EVENT_ID}  # found at once
        for seq in sorted(messages):
            if seq >= body["seq"] and messages[seq] is not None:
                data = base64.b64encode(json.dumps({"eventId": messages[seq]}).encode()).decode()
                return {"message": {"seq": seq, "subject": body["next_by_subj"], "data": data}}
        raise ApiError(api, {"code": 404, "err_code": 10037, "description": "no message found"})

    def raw_request(self, subject, data, headers=None):
        self.published.append((subject, json.loads(data), headers))
        return SimpleNamespace(data=json.dumps(self.publish_reply).encode())


class Http(object):
    def __init__(self, post=(200, None), metrics=(200, METRICS)):
        self.post, self.metrics, self.calls = post, metrics, []

    def __call__(self, method, url, body, timeout):
        self.calls.append((method, url, json.loads(body) if body else None))
        return self.post if method == "POST" else self.metrics


class Db(object):
    def __init__(self, answers):
        self.answers = list(answers)  # rows lists or exceptions, in order; the last one repeats
        self.calls = []

    def __call__(self, sql, args):
        self.calls.append((sql, args))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Transient(Exception):
    pass


EVENT_ID = "migration-verify-p2-after-1"
ROW_SPEC = {"table": "hrv_data", "key_column": "event_id", "match": {"user_id": "userId", "rmssd": "rmssd"},
            "check": "abs(ln_rmssd - ln(rmssd)) < 1e-9"}


def params(after=True, **over):
    p = dict(event={"userId": "u1", "rmssd": 48.3}, event_id=EVENT_ID, event_id_field="eventId",
             ingest_url="http://ingest:4101", ingest_path="/api/v1/ingest/hrv", subject="athlete-ally.hrv.raw-received",
             http_timeout=30, expected_stream="AA_CORE_HOT" if after else "ATHLETE_ALLY_EVENTS", stream="AA_CORE_HOT",
             consumers=["normalize-hrv-durable"], drain_timeout="5s", stall_timeout="3s", stable_polls=2,
             poll_interval="10ms", row=ROW_SPEC, reply={"stream_field": "stream", "seq_field": "seq"}, metrics_url="http://normalize:9464/metrics",
             metric="normalize_hrv_messages_total", metric_labels={"result": "success", "stream": "AA_CORE_HOT"},
             legacy_stream="ATHLETE_ALLY_EVENTS", groups=[{"phase": 2, "stream": "AA_CORE_HOT"}])
    p.update(over)
    return p


ROW = {"user_id": "u1", "rmssd": 48.3, "check_ok": True}


@pytest.fixture
def legacy_read(monkeypatch):
    calls = []

    def fake_read(js, legacy, groups):
        calls.append((legacy, groups))
        return {"legacy": {"exists": True, "subjects": [], "last_seq": 10}, "groups": {"2": {"journal": {"cutover_seq": 10}}}}

    monkeypatch.setattr(verify.migration_state, "read", fake_read)
    return calls


def run(p, js, http, db, clock=None):
    clock = clock or FakeClock()
    return verify.Verify(p, js, http, db, sleep=clock.sleep, clock=clock, transient=(Transient,)).run()


def test_after_cutover_gathers_every_piece_of_evidence(legacy_read):
    http = Http(post=(200, json.dumps({"status": "accepted", "stream": "AA_CORE_HOT", "seq": 41})))
    db = Db([[], [], [ROW]])
    js = FakeJs([consumer(41, 41)], messages={41: EVENT_ID})
    out = run(params(), js, http, db)
    assert out["path"] == "ingest API /api/v1/ingest/hrv" and out["status"] == 200 and out["accepted"]
    assert out["ack"]["stream"] == "AA_CORE_HOT" and out["ack"]["seq"] == 41
    method, url, body = http.calls[0]
    assert (method, url) == ("POST", "http://ingest:4101/api/v1/ingest/hrv")
    assert body == {"userId": "u1", "rmssd": 48.3, "eventId": "migration-verify-p2-after-1"}
    assert len(db.calls) == 3 and db.calls[0][1] == {"id": "migration-verify-p2-after-1"}
    assert 'FROM "hrv_data" WHERE "event_id" = %(id)s' in db.calls[0][0]  # parameterised, never the id in the SQL
    assert '(abs(ln_rmssd - ln(rmssd)) < 1e-9) AS check_ok' in db.calls[0][0]
    assert out["rows"] == [ROW] and out["row"] == ROW and out["row_mismatches"] == []
    assert out["in_stream"]["seq"] == 41 and out["reply_errors"] == []
    [proc] = out["processed"]
    assert proc["consumer"] == "normalize-hrv-durable" and proc["until_stream_seq"] == 41 and proc["drained"]
    assert proc["final"]["delivered"]["consumer_seq"] == 7 and proc["polls"] == 1  # one reading proves it
    assert out["metric"] == prom_sum(METRICS, "normalize_hrv_messages_total",
                                     {"result": "success", "stream": "AA_CORE_HOT"}) == 3.0
    assert [c[0] for c in http.calls] == ["POST", "GET"]
    assert legacy_read == [("ATHLETE_ALLY_EVENTS", [{"phase": 2, "stream": "AA_CORE_HOT"}])]
    assert out["migration"]["legacy"]["last_seq"] == 10


def test_after_cutover_waits_until_the_ack_floor_passes_the_events_seq(legacy_read):
    http = Http(post=(200, json.dumps({"stream": "AA_CORE_HOT", "seq": 41})))
    js = FakeJs([consumer(40, 39, pending=1, ack_pending=1), consumer(41, 40, ack_pending=1), consumer(41, 41)])
    out = run(params(drain_timeout="5s"), js, http, Db([[ROW]]))
    assert out["processed"][0]["polls"] == 3 and out["processed"][0]["final"]["ack_floor"]["stream_seq"] == 41


def test_before_cutover_row_first_then_full_drain_and_no_metric_or_legacy_read(legacy_read):
    http = Http(post=(200, json.dumps({"stream": "ATHLETE_ALLY_EVENTS", "seq": 900})))
    order = []
    db = Db([[ROW]])
    js = FakeJs([consumer(12, 12)])
    orig_query, orig_info = db.__call__, js.consumer_info
    js.consumer_info = lambda s, n: order.append("drain") or orig_info(s, n)
    out = run(params(after=False), js, http, lambda sql, args: order.append("row") or orig_query(sql, args))
    assert order[0] == "row" and order[1:] == ["drain", "drain"]  # full drain: stable_polls=2 readings
    proc = out["processed"][0]
    assert proc["until_stream_seq"] is None and proc["polls"] == 2 and proc["drained"]
    assert out["metric"] is None and out["migration"] is None and legacy_read == []
    assert [c[0] for c in http.calls] == ["POST"]


def test_not_accepted_stops_after_the_send(legacy_read):
    for answer in [(503, json.dumps({"error": "NATS unavailable"})), (200, json.dumps({"stream": "OTHER", "seq": 1}))]:
        db = Db([[ROW]])
        js = FakeJs([consumer(1, 1)])
        out = run(params(), js, Http(post=answer), db)
        assert not out["accepted"] and out["status"] == answer[0]
        assert out["response"] == json.loads(answer[1])
        assert db.calls == [] and js.consumer_reads == [] and out["processed"] == [] and legacy_read == []


def test_other_http_status_fails_in_one_line():
    with pytest.raises(JetStreamError) as err:
        run(params(), FakeJs([consumer(1, 1)]), Http(post=(500, "boom\ntrace")), Db([[ROW]]))
    assert "HTTP 500" in str(err.value) and "\n" not in str(err.value)
    assert err.value.result["event_id"] == "migration-verify-p2-after-1"


def test_fallback_publishes_with_the_event_id_as_msg_id(legacy_read):
    js = FakeJs([consumer(5, 5)], publish_reply={"stream": "AA_CORE_HOT", "seq": 5})
    http = Http()
    out = run(params(ingest_url=""), js, http, Db([[ROW]]))
    assert out["path"] == "direct NATS publish (fallback)" and out["status"] == 200 and out["ack"]["seq"] == 5
    [(subject, body, headers)] = js.published
    assert subject == "athlete-ally.hrv.raw-received" and body["eventId"] == "migration-verify-p2-after-1"
    assert headers["Nats-Msg-Id"] == "migration-verify-p2-after-1"
    assert [c[0] for c in http.calls] == ["GET"]  # only the metrics


def test_row_wait_is_bounded_and_names_the_last_state():
    clock = FakeClock()
    js = FakeJs([consumer(40, 40, pending=2)])
    db = Db([Transient("server closed the connection\nunexpectedly"), []])
    with pytest.raises(JetStreamError) as err:
        run(params(stall_timeout="3s"), js, Http(post=(200, json.dumps({"stream": "AA_CORE_HOT", "seq": 41}))), db,
            clock)
    msg = str(err.value)
    assert "no hrv_data row within stall_timeout=3s" in msg and "migration-verify-p2-after-1" in msg
    assert "pending=2" in msg and "\n" not in msg
    assert 3.0 <= clock.t < 3.5 and len(db.calls) >= 12  # polled every 0.25 s, not longer than the bound
    assert err.value.result["ack"]["seq"] == 41 and err.value.result["rows"] == []


def test_transient_database_errors_are_ridden_out(legacy_read):
    db = Db([Transient("connection refused"), Transient("connection refused"), [ROW]])
    out = run(params(), FakeJs([consumer(41, 41)]), Http(post=(200, json.dumps({"stream": "AA_CORE_HOT", "seq": 41}))),
              db)
    assert out["row"] == ROW and len(db.calls) == 3


def test_drain_timeout_names_the_option_and_keeps_the_evidence():
    js = FakeJs([consumer(40, 39, pending=1, ack_pending=1)])
    with pytest.raises(JetStreamError) as err:
        run(params(drain_timeout="0.2s", stall_timeout="30s"), js,
            Http(post=(200, json.dumps({"stream": "AA_CORE_HOT", "seq": 41}))), Db([[ROW]]))
    msg = str(err.value)
    assert "drain_timeout=0.2s" in msg and "raise `drain_timeout`" in msg and "reach stream sequence 41" in msg
    assert err.value.result["row"] == ROW and err.value.result["processed"][0]["drained"] is False


def test_inputs_checked_before_anything_is_sent():
    http = Http()
    with pytest.raises(JetStreamError, match="set subject"):
        verify.Verify(params(ingest_url="", subject=None), FakeJs(), http, Db([[]]))
    with pytest.raises(JetStreamError, match="set metrics_url"):
        verify.Verify(params(metrics_url=None), FakeJs(), http, Db([[]]))
    with pytest.raises(JetStreamError, match="drain_timeout"):
        verify.Verify(params(drain_timeout="soon"), FakeJs(), http, Db([[]]))
    assert http.calls == []


def test_rows_as_json():
    import datetime
    import decimal
    rows = verify.rows_as_dicts(["a", "b", "c"], [(decimal.Decimal("42.5"), datetime.date(2025, 10, 1), True)])
    assert rows == [{"a": 42.5, "b": "2025-10-01", "c": True}]


def test_group_without_row_or_consumers_is_found_in_the_new_stream_after_other_messages(legacy_read):
    """A group nobody reads yet: published straight to NATS, found in the new stream past other messages on the
    subject (the scan starts after the stream's last seq before the send)."""
    js = FakeJs([], publish_reply={"stream": "X_SLEEP", "seq": 12}, last_seq=9,
                messages={10: "lg-other-1", 11: None, 12: EVENT_ID})
    p = params(ingest_url="", subject="sleep.verify", expected_stream="X_SLEEP", stream="X_SLEEP", consumers=[],
               row=None, metric=None, metrics_url=None)
    out = run(p, js, Http(), Db([[]]))
    assert out["in_stream"] == {"stream": "X_SLEEP", "seq": 12, "subject": "sleep.verify"}
    assert out["rows"] == [] and out["processed"] == [] and out["metric"] is None


def test_before_the_cutover_the_copy_is_waited_for_and_bounded():
    clock = FakeClock()
    js = FakeJs([], publish_reply={"stream": "ATHLETE_ALLY_EVENTS", "seq": 500}, last_seq=3, messages={4: "other"})
    p = params(after=False, ingest_url="", subject="sleep.verify", stream="X_SLEEP", consumers=[], row=None)
    with pytest.raises(JetStreamError) as err:
        run(p, js, Http(), Db([[]]), clock)
    msg = str(err.value)
    assert "not in X_SLEEP on sleep.verify within stall_timeout=3s (looked from seq 4)" in msg and "\n" not in msg
    assert 3.0 <= clock.t < 3.5


def test_row_compared_with_the_event_and_reply_fields_from_the_contract(legacy_read):
    reply = {"stream_field": "storedIn", "seq_field": "position", "duplicate_field": "dup"}
    http = Http(post=(200, json.dumps({"storedIn": "AA_CORE_HOT", "position": 41})))
    row = {"user_id": "someone-else", "rmssd": 48.3, "check_ok": False}
    out = run(params(reply=reply), FakeJs([consumer(41, 41)]), http, Db([[row]]))
    assert out["accepted"] and out["ack"] == {"stream": "AA_CORE_HOT", "seq": 41, "duplicate": None}
    assert out["reply_errors"] == ["front door POST http://ingest:4101/api/v1/ingest/hrv: the front door's answer "
                                   "lacks 'dup' (migration.service_contract.reply.duplicate_field); answer: "
                                   "{'storedIn': 'AA_CORE_HOT', 'position': 41}"]
    assert out["row_mismatches"] == ["hrv_data.user_id is 'someone-else', the event's userId is 'u1'",
                                     "hrv_data: check 'abs(ln_rmssd - ln(rmssd)) < 1e-9' does not hold on the row"]


def test_a_reply_without_seq_after_the_cutover_fails_in_one_line():
    http = Http(post=(200, json.dumps({"stream": "AA_CORE_HOT"})))
    with pytest.raises(JetStreamError) as err:
        run(params(), FakeJs([consumer(41, 41)]), http, Db([[ROW]]))
    assert "carries no seq" in str(err.value) and err.value.result["reply_errors"]
