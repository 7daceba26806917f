# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""A deployment against the service contract (docs/SERVICE_CONTRACT.md), proven before anything is written.

1. The contract's inventory keys (service_contract.plan_errors): nothing is probed with a malformed contract.
2. The database, as the migration's user: each verification table and its key, match and time columns exist
   (information_schema shows what the user may see), and the user can read them (``SELECT ... LIMIT 0``).
3. Per group with a front-door path: one probe event through the front door, its id
   ``<verification_id_prefix>contract-probe-p<phase>`` (fixed: a second probe is deduplicated by the stream or
   by the row's unique key, so probing leaves at most one row per group, and post_migration.yml removes it with
   the other verification rows). Its answer must carry the contract's reply fields; with ``verify.row``, its row
   must appear (bounded by ``stall_timeout``) equal to the event.
4. The service's /metrics: each group's ``verify.metric`` family with its labels and the contract's stream label,
   polled (bounded) because the counters move just after the probe's row is written.

Every finding is one line naming what is wrong and where; ``run`` returns them all (``errors``) and the playbook
refuses with them joined. The probe is the only write, and the reason to accept it: the reply fields, the row and
the per-stream metrics can only be seen on an event that went through.
"""

from __future__ import annotations

import json
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, service_contract, verify
from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import fmt_seconds
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError

POLL_SECONDS = 0.25
NO_SAMPLES = "/metrics has no "  # service_contract.metric_errors' line for a family without samples


def probe_id(contract, phase):
    return "%scontract-probe-p%s" % (contract["verification_id_prefix"], phase)


def split_table(name):
    """``(schema or None, table)`` of ``table`` or ``schema.table``."""
    parts = str(name).split(".")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


class Probe(object):
    """``http(method, url, body, timeout) -> (status, text)`` and ``query(sql, args) -> [row dicts]`` are passed in
    (the module gives verify.http_request and psycopg2; unit tests give fakes)."""

    def __init__(self, params, http, query, sleep=time.sleep, clock=time.monotonic):
        self.p = params
        self.migration = params["migration"] or {}
        self.contract = service_contract.contract_of(self.migration)
        self.http = http
        self.query = query
        self.sleep = sleep
        self.clock = clock
        self.timeout = durations.wait_seconds(params["stall_timeout"], "stall_timeout", allow_zero=False)
        self.out = dict(changed=False, errors=[], probes={}, tables={}, metrics_checked=[], unproven=[])

    def groups(self):
        return [(i, g) for i, g in enumerate(self.migration.get("groups") or []) if isinstance(g, dict)]

    # -- 2. the database --------------------------------------------------------------------
    def check_tables(self):
        errors = []
        for i, group in self.groups():
            row = (group.get("verify") or {}).get("row")
            if not row:
                continue
            where = "migration.groups[%d].verify.row" % i
            schema, table = split_table(row["table"])
            found = self.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %(t)s AND "
                "(%(s)s::text IS NULL AND table_schema = ANY(current_schemas(false)) OR table_schema = %(s)s)",
                {"t": table, "s": schema})
            present = {row["table"]: {r["column_name"] for r in found}} if found else {}
            self.out["tables"][row["table"]] = sorted(present.get(row["table"], []))
            lines = service_contract.column_errors(where, row, present)
            if not lines:
                try:  # information_schema lists columns the user holds any privilege on; reading needs SELECT
                    self.query(service_contract.row_query(row)[0] + " LIMIT 0", {"id": ""})
                except Exception as exc:  # noqa: BLE001 - the database's refusal is the finding
                    lines = ["%s: the migration's database user cannot read %s (%s); grant it SELECT"
                             % (where, row["table"], " ".join(str(exc).split())[:200])]
            errors += lines
        return errors

    # -- 3. the front door ------------------------------------------------------------------
    def probe(self, i, group):
        verify_spec = group["verify"]
        where = "migration.groups[%d].verify" % i
        event_id = probe_id(self.contract, group["phase"])
        event = verify.make_event(verify_spec["payload"], event_id, self.contract["event_id_field"])
        url = self.p["ingest_url"].rstrip("/") + "/" + verify_spec["path"].lstrip("/")
        status, text = self.http("POST", url, json.dumps(event), self.p["http_timeout"])
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        self.out["probes"][str(group["phase"])] = dict(event_id=event_id, url=url, status=status, response=body)
        self.out["changed"] = True
        if status != 200:
            return ["%s.path: the front door answered the probe POST %s with HTTP %s (expected 200): %s"
                    % (where, url, status, " ".join(str(text or "").split())[:200])]
        errors = service_contract.reply_errors("%s.path: probe POST %s" % (where, url), body, self.contract)
        row = verify_spec.get("row")
        if row:
            errors += self.wait_row(where + ".row", row, event)
        return errors

    def wait_row(self, where, row, event):
        sql = service_contract.row_query(row)[0]
        start, last_error = self.clock(), None
        while True:
            try:
                rows = self.query(sql, {"id": event[self.contract["event_id_field"]]})
                last_error = None
            except Exception as exc:  # noqa: BLE001 - ridden out until the bound, then named
                rows, last_error = [], " ".join(str(exc).split())[:200]
            if rows:
                return ["%s: %s" % (where, line) for line in service_contract.row_mismatches(row, rows[0], event)]
            if self.clock() - start >= self.timeout:
                return ["%s: no %s row with %s = %r within stall_timeout=%ss (%s); the service must write the event "
                        "it accepted" % (where, row["table"], row["key_column"], event[self.contract["event_id_field"]],
                                         fmt_seconds(self.timeout), last_error or "no row yet")]
            self.sleep(POLL_SECONDS)

    # -- 4. the metrics ---------------------------------------------------------------------
    def check_metrics(self):
        wanted = [(i, g["verify"]["metric"]) for i, g in self.groups() if (g.get("verify") or {}).get("metric")]
        if not wanted:
            return []
        if not self.p.get("metrics_url"):
            return ["migration_endpoints.metrics: missing; the contract's metrics (verify.metric) are read there"]
        start = self.clock()
        while True:
            status, text = self.http("GET", self.p["metrics_url"], None, self.p["http_timeout"])
            if status != 200:
                lines = ["migration_endpoints.metrics: %s answered HTTP %s" % (self.p["metrics_url"], status)]
            else:
                lines = []
                for i, metric in wanted:
                    lines += service_contract.metric_errors("migration.groups[%d].verify.metric" % i, text, metric,
                                                            self.contract["stream_label"])
            if not self.p.get("probe"):
                # without a probe an idle service may not have counted anything yet: absent samples prove nothing
                # (said in "unproven"), a sample lacking a label does
                self.out["unproven"] = [line for line in lines if NO_SAMPLES in line]
                lines = [line for line in lines if NO_SAMPLES not in line]
            # only a probe's counters are on their way: without one, one reading is all there is
            if not lines or not self.p.get("probe") or self.clock() - start >= self.timeout:
                self.out["metrics_checked"] = [pair[1]["name"] for pair in wanted]
                return lines
            self.sleep(POLL_SECONDS)

    def run(self):
        errors = service_contract.plan_errors(self.migration)
        if errors:  # a malformed contract cannot be probed
            self.out["errors"] = errors
            return self.out
        errors = self.check_tables()
        if not errors and self.p.get("probe"):
            if not self.p.get("ingest_url"):
                self.out["probes"] = "no front door (migration_endpoints.ingest unset): nothing to probe"
            else:
                for i, group in self.groups():
                    if group["verify"].get("path"):
                        errors += self.probe(i, group)
        if not errors:
            errors = self.check_metrics()
        self.out["errors"] = errors
        return self.out


def run(module):
    p = module.params
    db = verify.Database(p["db_host"], p["db_port"], p["db_user"], p["db_password"], p["db_name"])
    try:
        out = Probe(dict(p, probe=p["probe"] and not module.check_mode), verify.http_request, db.query).run()
        if module.check_mode and p["probe"]:
            out["probes"] = "check mode: no probe event sent (the reply fields and the rows were not proven)"
        return out
    except JetStreamError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except Exception as exc:  # noqa: BLE001 - the database or a URL refused us: one line naming it
        detail = " ".join(str(exc).split())[:300]
        module.fail_json(msg="service contract check: %s (database %s): %s; check migration_endpoints and the "
                             "migration's database user" % (exc.__class__.__name__, db.where, detail))
    finally:
        db.close()
