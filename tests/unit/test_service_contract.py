"""The service contract's inventory keys (module_utils/service_contract.py): the lab inventory's contract is clean,
each mistake is one line naming its key, and the live judgments (reply fields, columns, metrics, the row) say what is
missing and where. The contract probe (module_utils/contract_probe.py) with fakes for HTTP and the database."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import contract_probe  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils import service_contract as sc  # noqa: E402
from tests.support.fake_clock import FakeClock  # noqa: E402
from tests.support.inventory import rendered  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def inventory(env="lab"):
    if env != "lab":  # staging and production name their topology from inventories/migration_topology.yml
        return rendered(env)
    return yaml.safe_load((REPO / "inventories" / env / "group_vars" / "all" / "migration.yml").read_text())["migration"]


@pytest.mark.parametrize("env", ["lab", "staging", "production"])
def test_the_shipped_inventories_meet_their_contract_keys(env):
    assert sc.plan_errors(inventory(env)) == []


def broken(change):
    m = copy.deepcopy(inventory())
    change(m)
    return sc.plan_errors(m)


@pytest.mark.parametrize("change, line", [
    (lambda m: m.pop("service_contract"), "migration.service_contract: missing;"),
    (lambda m: m["service_contract"]["reply"].pop("seq_field"), "migration.service_contract.reply.seq_field: missing;"),
    (lambda m: m["service_contract"].update(stream_label="a-b"), "migration.service_contract.stream_label: 'a-b' is not"),
    (lambda m: m["service_contract"]["health"].pop("expect"), "migration.service_contract.health.expect: missing"),
    (lambda m: m["modes"]["multi"].pop("AA_STREAM_CANDIDATES"), "migration.modes.multi: lacks AA_STREAM_CANDIDATES"),
    (lambda m: m["groups"][1].pop("verify"), "migration.groups[1].verify: missing;"),
    (lambda m: m["groups"][0].update(verify_table="x"), "migration.groups[0].verify_table: replaced by verify.row.table"),
    (lambda m: m["groups"][0]["verify"].update(subject="athlete-ally.hrv.raw-received"),
     "migration.groups[0].verify.subject: 'athlete-ally.hrv.raw-received' is not among the group's subjects"),
    (lambda m: m["groups"][0]["verify"].update(subject="vendor.>"), "migration.groups[0].verify.subject: 'vendor.>' has"),
    (lambda m: m["groups"][1]["verify"]["row"].update(table="hrv data"),
     "migration.groups[1].verify.row.table: 'hrv data' is not a SQL identifier"),
    (lambda m: m["groups"][1]["verify"]["row"]["match"].update(rmssd="hrv"),
     "migration.groups[1].verify.row.match.rmssd: field 'hrv' is not in migration.groups[1].verify.payload;"),
    (lambda m: m["groups"][1]["verify"]["payload"].update(eventId="x"),
     "migration.groups[1].verify.payload.eventId: the migration sets the event's id"),
    (lambda m: m["groups"][1].update(consumers=[]), "migration.groups[1].verify.row: no consumer of migration.groups[1]"),
    (lambda m: m["groups"][0]["verify"].update(path="api"), "migration.groups[0].verify.path: 'api' must start with /"),
    (lambda m: m["groups"][0]["verify"]["metric"].update(name="9x"), "migration.groups[0].verify.metric.name"),
    (lambda m: m["groups"][1]["verify"]["row"].pop("time_column"), "no group's verify.row names a time_column"),
])
def test_each_mistake_is_one_line_naming_its_key(change, line):
    errors = broken(change)
    assert any(e.startswith(line) or line in e for e in errors), errors
    assert all("\n" not in e for e in errors)


def test_a_group_without_consumers_row_metric_or_path_is_a_valid_contract():
    def sleep_group(m):
        m["groups"].append({"phase": 3, "stream": "X_SLEEP", "subjects": ["sleep.*"], "consumers": [],
                            "verify": {"subject": "sleep.verify", "payload": {"probe": True}}})
    assert broken(sleep_group) == []


def test_subject_matches():
    assert sc.subject_matches("vendor.>", "vendor.oura.x") and not sc.subject_matches("vendor.>", "vendor")
    assert sc.subject_matches("sleep.*", "sleep.a") and not sc.subject_matches("sleep.*", "sleep.a.b")
    assert sc.subject_matches("a.b", "a.b") and not sc.subject_matches("a.b", "a.c")


def test_row_query_quotes_identifiers_and_keeps_the_id_a_parameter():
    sql, cols = sc.row_query({"table": "public.t", "key_column": "k", "match": {"c": "f"}, "check": "c > 0"})
    assert sql == 'SELECT "c", (c > 0) AS check_ok FROM "public"."t" WHERE "k" = %(id)s' and cols == ["c"]
    with pytest.raises(ValueError):
        sc.row_query({"table": "t; drop", "key_column": "k"})


def test_live_judgments_name_what_is_missing():
    assert sc.reply_errors("probe", {"stream": "S"}, {"reply": {"stream_field": "stream", "seq_field": "seq"}}) == [
        "probe: the front door's answer lacks 'seq' (migration.service_contract.reply.seq_field); answer: "
        "{'stream': 'S'}"]
    assert sc.reply_errors("p", {"stream": "S", "seq": "7"}, {"reply": {"seq_field": "seq"}}) == [
        "p: the answer's 'seq' is '7', not an integer sequence"]
    row = {"table": "t", "key_column": "k", "match": {"a": "f"}, "time_column": "ts"}
    assert sc.column_errors("w", row, {}) == [
        "w: table t not found (or not visible to the migration's database user); create it or fix verify.row.table"]
    assert sc.column_errors("w", row, {"t": {"k", "a"}}) == ["w: table t has no column ts; fix verify.row or the schema"]
    text = 'm{result="ok"} 1\n'
    assert sc.metric_errors("g", text, {"name": "m", "labels": {"result": "ok"}}, "stream") == [
        "g: m has no sample with the label 'stream'; the contract needs it (migration.service_contract.stream_label)"]
    assert sc.metric_errors("g", text, {"name": "other"}, "stream")[0].startswith("g: the service's /metrics has no other")


class Http(object):
    def __init__(self, post, metrics):
        self.post, self.metrics, self.calls = post, list(metrics), []

    def __call__(self, method, url, body, timeout):
        self.calls.append((method, url, json.loads(body) if body else None))
        if method == "POST":
            return self.post
        return self.metrics.pop(0) if len(self.metrics) > 1 else self.metrics[0]


class Db(object):
    def __init__(self, columns, rows):
        self.columns, self.rows, self.calls = columns, rows, []

    def __call__(self, sql, args):
        self.calls.append((sql, args))
        if "information_schema" in sql:
            return [{"column_name": c} for c in self.columns.get(args["t"], [])]
        if "LIMIT 0" in sql:
            return []
        return self.rows.get(args["id"], [])


METRICS_OK = ('normalize_messages_total{result="processed",subject="vendor.oura.webhook.received",stream="S"} 1\n'
              'normalize_hrv_messages_total{result="success",stream="S"} 1\n')
COLUMNS = {"vendor_events": ["event_id", "user_id", "event_type"],
           "hrv_data": ["event_id", "user_id", "rmssd", "captured_at"]}


def probe(http, db, clock=None, **over):
    clock = clock or FakeClock()
    p = dict(migration=inventory(), ingest_url="http://ingest", metrics_url="http://m/metrics", probe=True,
             stall_timeout="2s", http_timeout=5)
    p.update(over)
    return contract_probe.Probe(p, http, db, sleep=clock.sleep, clock=clock).run()


def test_probe_sends_one_fixed_id_per_group_and_finds_its_row_and_the_metrics():
    rows = {"migration-verify-contract-probe-p1": [{"user_id": "phase1-test-user", "event_type": "daily_activity"}],
            "migration-verify-contract-probe-p2": [{"user_id": "phase2-test-user", "rmssd": 42.5, "check_ok": True}]}
    http = Http((200, json.dumps({"stream": "S", "seq": 3, "duplicate": False})), [(200, "x 1\n"), (200, METRICS_OK)])
    out = probe(http, Db(COLUMNS, rows))
    assert out["errors"] == [], out
    posts = [c for c in http.calls if c[0] == "POST"]
    assert [c[2]["eventId"] for c in posts] == ["migration-verify-contract-probe-p1", "migration-verify-contract-probe-p2"]
    assert posts[0][1] == "http://ingest/api/v1/webhook/oura"
    assert out["metrics_checked"] == ["normalize_messages_total", "normalize_hrv_messages_total"]


def test_probe_findings_are_lines_and_nothing_is_sent_with_a_table_missing():
    http = Http((200, json.dumps({"stream": "S"})), [(200, METRICS_OK)])
    out = probe(http, Db({"vendor_events": COLUMNS["vendor_events"]}, {}))
    assert out["errors"] == ["migration.groups[1].verify.row: table hrv_data not found (or not visible to the "
                             "migration's database user); create it or fix verify.row.table"]
    assert [c for c in http.calls if c[0] == "POST"] == []


def test_probe_reply_without_seq_and_no_row_within_the_bound():
    clock = FakeClock()
    http = Http((200, json.dumps({"stream": "S", "duplicate": False})), [(200, METRICS_OK)])
    out = probe(http, Db(COLUMNS, {}), clock)
    assert any("lacks 'seq'" in e and e.startswith("migration.groups[0].verify.path") for e in out["errors"]), out
    assert any("no hrv_data row with event_id = 'migration-verify-contract-probe-p2' within stall_timeout=2s" in e
               for e in out["errors"]), out
    assert 4.0 <= clock.t < 5.0  # two rows waited for, each bounded


def test_check_mode_sends_nothing():
    http = Http((200, "{}"), [(200, METRICS_OK)])
    out = probe(http, Db(COLUMNS, {}), probe=False)
    assert out["errors"] == [] and [c[0] for c in http.calls] == ["GET"]


def test_without_a_probe_an_idle_family_is_unproven_not_refused_but_a_missing_label_is():
    idle = 'normalize_hrv_messages_total{result="success",stream="S"} 0\n'
    out = probe(Http((200, "{}"), [(200, idle)]), Db(COLUMNS, {}), probe=False)
    assert out["errors"] == [] and len(out["unproven"]) == 1 and "normalize_messages_total" in out["unproven"][0]
    no_label = idle.replace(',stream="S"', "")
    out = probe(Http((200, "{}"), [(200, no_label)]), Db(COLUMNS, {}), probe=False)
    assert out["errors"] == ["migration.groups[1].verify.metric: normalize_hrv_messages_total has no sample with the "
                             "label 'stream'; the contract needs it (migration.service_contract.stream_label)"]
