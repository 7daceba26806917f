# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The service contract (docs/SERVICE_CONTRACT.md): what the services must offer for the migration to verify them,
as inventory data, checked here.

``plan_errors(migration)`` checks the inventory's keys of the contract (``migration.service_contract`` and every
group's ``verify``), one line each naming the key and what to do; the plan validator (module_utils/plan.py) calls
it with the rest of the plan. The other functions judge a live deployment against the contract (the
``service_contract`` module, playbooks/contract_check.yml): the tables and columns the database has, the front
door's answer to a probe event, the metric families the service exposes. No name of the application lives here:
every name comes from the inventory.
"""

from __future__ import annotations

import re

from ansible_collections.athlete_ally.nats.plugins.module_utils import prometheus

# A SQL identifier as the contract takes it: a plain name, optionally schema-qualified (quoted when used).
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Keys a group used to carry before the contract (their replacements, for a one-line hint).
OLD_KEYS = {"verify_subject": "verify.subject", "verify_path": "verify.path", "verify_payload": "verify.payload",
            "verify_payload_after": "verify.payload_after", "verify_table": "verify.row.table",
            "verify_metric": "verify.metric"}
DOC = "docs/SERVICE_CONTRACT.md"


def subject_matches(pattern, subject):
    """Whether the NATS ``subject`` (no wildcards) is matched by ``pattern`` (``*`` one token, ``>`` the rest)."""
    want, have = str(pattern).split("."), str(subject).split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def _text(value):
    return isinstance(value, str) and value.strip() != ""


def contract_of(migration):
    return (migration or {}).get("service_contract") or {}


def candidates_var(migration):
    """The mode variable listing the streams the service binds to (``service_contract.candidates_var``)."""
    return contract_of(migration).get("candidates_var")


def _contract_errors(contract):
    key = "migration.service_contract"
    if not isinstance(contract, dict) or not contract:
        return ["%s: missing; describe what the services offer (reply fields, event id field, metrics): see %s"
                % (key, DOC)]
    out = []
    reply = contract.get("reply")
    if not isinstance(reply, dict):
        out.append("%s.reply: missing; give {stream_field, seq_field} of the front door's answer" % key)
    else:
        for field in ("stream_field", "seq_field"):
            if not _text(reply.get(field)):
                out.append("%s.reply.%s: missing; name the field of the front door's answer that carries the %s"
                           % (key, field, field.split("_", maxsplit=1)[0]))
        if "duplicate_field" in reply and not _text(reply.get("duplicate_field")):
            out.append("%s.reply.duplicate_field: empty; name the answer's dedupe flag or drop the key" % key)
    for field, what in (("event_id_field", "the payload key the event's id goes under"),
                        ("verification_id_prefix", "the prefix of verification events' ids (e.g. migration-verify-)"),
                        ("candidates_var", "the mode variable listing the streams the service binds to")):
        if not _text(contract.get(field)):
            out.append("%s.%s: missing; set %s" % (key, field, what))
    label = contract.get("stream_label")
    if not (_text(label) and _LABEL.match(label)):
        out.append("%s.stream_label: %s; name the label that carries the stream in per-stream metrics"
                   % (key, "missing" if label in (None, "") else "%r is not a label name" % (label,)))
    health = contract.get("health")
    if not isinstance(health, dict) or not all(_text(health.get(k)) for k in ("front_door", "service")):
        out.append("%s.health: missing; give {front_door, service} as migration_endpoints keys of their health URLs"
                   % key)
    elif not (isinstance(health.get("expect"), dict) and health["expect"]):
        out.append("%s.health.expect: missing; give the fields and values a healthy answer holds, e.g. {status: ok}"
                   % key)
    return out


def _row_errors(where, row, payloads):
    out = []
    if not isinstance(row, dict):
        return ["%s: must be a dict {table, key_column, match}; drop it when the group writes no row" % where]
    for field in ("table", "key_column"):
        value = row.get(field)
        if not (_text(value) and IDENT.match(value)):
            out.append("%s.%s: %s; name the %s" % (
                where, field, "missing" if value in (None, "") else "%r is not a SQL identifier" % (value,),
                "table the service writes the event to" if field == "table" else "column holding the event's id"))
    for field in ("time_column",):
        if field in row and not (_text(row[field]) and IDENT.match(row[field])):
            out.append("%s.%s: %r is not a SQL identifier; name the row's time column or drop the key"
                       % (where, field, row[field]))
    match = row.get("match", {})
    if not isinstance(match, dict):
        out.append("%s.match: must map a column to a payload field, {column: field}" % where)
        match = {}
    for column, field in match.items():
        if not IDENT.match(str(column)):
            out.append("%s.match: %r is not a SQL column name" % (where, column))
        for name, payload in payloads:
            if isinstance(payload, dict) and field not in payload:
                out.append("%s.match.%s: field %r is not in %s; add it or match another field"
                           % (where, column, field, name))
    if "check" in row and not _text(row["check"]):
        out.append("%s.check: empty; give an SQL predicate on the row or drop the key" % where)
    return out


def _verify_errors(i, group, contract):
    where = "migration.groups[%d].verify" % i
    out = ["migration.groups[%d].%s: replaced by %s (%s)" % (i, old, new, DOC)
           for old, new in sorted(OLD_KEYS.items()) if old in group]
    verify = group.get("verify")
    if not isinstance(verify, dict):
        return out + ["%s: missing; give at least {subject, payload} (%s)" % (where, DOC)]
    subject = verify.get("subject")
    subjects = group.get("subjects") or []
    if not _text(subject) or "*" in subject or ">" in subject:
        out.append("%s.subject: %s; name one subject (no wildcard) of the group to verify with"
                   % (where, "missing" if not subject else "%r has a wildcard" % (subject,)))
    elif isinstance(subjects, list) and subjects and not any(subject_matches(s, subject) for s in subjects):
        out.append("%s.subject: %r is not among the group's subjects %s; pick one of them" % (where, subject, subjects))
    payloads = []
    for field in ("payload", "payload_after"):
        if field in verify or field == "payload":
            if not isinstance(verify.get(field), dict):
                out.append("%s.%s: %s; give the verification event's JSON body as a dict"
                           % (where, field, "missing" if field not in verify else "not a dict"))
            else:
                payloads.append(("%s.%s" % (where, field), verify[field]))
                id_field = contract.get("event_id_field") if isinstance(contract, dict) else None
                if id_field and id_field in verify[field]:
                    out.append("%s.%s.%s: the migration sets the event's id; drop the key" % (where, field, id_field))
    path = verify.get("path")
    if path not in (None, "") and not (isinstance(path, str) and path.startswith("/")):
        out.append("%s.path: %r must start with /; or drop it to publish straight to NATS" % (where, path))
    if "row" in verify:
        out += _row_errors(where + ".row", verify["row"], payloads)
        names = [c.get("filter_subject") for c in group.get("consumers") or [] if isinstance(c, dict)]
        if _text(subject) and subject not in names:
            out.append("%s.row: no consumer of migration.groups[%d] has filter_subject %r, so nothing writes the row;"
                       " add that consumer or drop verify.row" % (where, i, subject))
    if "metric" in verify:
        metric = verify["metric"]
        if not isinstance(metric, dict) or not (_text(metric.get("name")) and _METRIC.match(metric["name"])):
            out.append("%s.metric.name: missing or not a metric name; name the per-stream counter or drop verify.metric"
                       % where)
        elif not isinstance(metric.get("labels", {}), dict):
            out.append("%s.metric.labels: must be a dict of label: value" % where)
    return out


def plan_errors(migration):
    """One line per missing or malformed contract key of ``migration`` (the inventory's ``migration`` dict)."""
    migration = migration or {}
    contract = migration.get("service_contract")
    out = _contract_errors(contract)
    var = (contract or {}).get("candidates_var") if isinstance(contract, dict) else None
    if _text(var):
        for mode, env in sorted((migration.get("modes") or {}).items()):
            if isinstance(env, dict) and var not in env:
                out.append("migration.modes.%s: lacks %s (migration.service_contract.candidates_var); name the "
                           "streams the service binds to in this mode" % (mode, var))
    groups = [g for g in migration.get("groups") or [] if isinstance(g, dict)]
    for i, group in enumerate(migration.get("groups") or []):
        if isinstance(group, dict):
            out += _verify_errors(i, group, contract if isinstance(contract, dict) else {})
    if groups and not any(isinstance((g.get("verify") or {}).get("row"), dict) and g["verify"]["row"].get("time_column")
                          for g in groups if isinstance(g.get("verify"), dict)):
        out.append("migration.groups[].verify.row.time_column: no group's verify.row names a time_column; name the "
                   "time column of at least one verification table, so validate can judge \"no regression\" (%s)"
                   % DOC)
    return out


# -- a live deployment against the contract ------------------------------------------------------------------
def row_query(row, columns=None):
    """``(sql, column list)`` reading the verification row: the match columns and, with ``row.check``, whether the
    predicate holds (``check_ok``). Identifiers are checked and quoted; the id is a parameter (``%(id)s``)."""
    cols = list(columns if columns is not None else (row.get("match") or {}).keys())
    for name in [row["table"], row["key_column"]] + cols:
        if not IDENT.match(str(name)):
            raise ValueError("%r is not a SQL identifier" % (name,))
    select = [quote(c) for c in cols] or ["1 AS present"]
    if row.get("check"):
        select.append("(%s) AS check_ok" % row["check"])
    return ("SELECT %s FROM %s WHERE %s = %%(id)s" % (", ".join(select), quote(row["table"]), quote(row["key_column"])),
            cols)


def quote(ident):
    return ".".join('"%s"' % part for part in str(ident).split("."))


def _same(have, want):
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want or have == want
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return abs(float(have) - float(want)) <= 1e-9 * max(1.0, abs(float(want)))
    return have == want or (have is not None and str(have) == str(want))


def row_mismatches(row_spec, row, event):
    """Lines naming each match column whose value differs from the event's field, and a failed check."""
    out = []
    for column, field in (row_spec.get("match") or {}).items():
        if not _same(row.get(column), event.get(field)):
            out.append("%s.%s is %r, the event's %s is %r" % (row_spec["table"], column, row.get(column), field,
                                                              event.get(field)))
    if row_spec.get("check") and row.get("check_ok") is not True:
        out.append("%s: check %r does not hold on the row" % (row_spec["table"], row_spec["check"]))
    return out


def reply_errors(where, reply, contract):
    """Lines naming each contract reply field the front door's answer lacks."""
    fields = contract.get("reply") or {}
    if not isinstance(reply, dict):
        return ["%s: the front door answered %r, not a JSON object carrying %s" % (
            where, reply, ", ".join(sorted(str(v) for v in fields.values())))]
    out = []
    for key in ("stream_field", "seq_field", "duplicate_field"):
        name = fields.get(key)
        if name and name not in reply:
            out.append("%s: the front door's answer lacks %r (migration.service_contract.reply.%s); answer: %s"
                       % (where, name, key, " ".join(str(reply).split())[:200]))
    seq = fields.get("seq_field")
    if seq and seq in reply and (isinstance(reply[seq], bool) or not isinstance(reply[seq], int)):
        out.append("%s: the answer's %r is %r, not an integer sequence" % (where, seq, reply[seq]))
    return out


def column_errors(where, row_spec, present):
    """Lines for the verification table or columns missing from ``present`` ({table: set of columns}, as the
    migration's database user sees them in information_schema)."""
    table = row_spec["table"]
    have = present.get(table)
    if have is None:
        return ["%s: table %s not found (or not visible to the migration's database user); create it or fix "
                "verify.row.table" % (where, table)]
    want = [row_spec["key_column"]] + list((row_spec.get("match") or {}).keys())
    if row_spec.get("time_column"):
        want.append(row_spec["time_column"])
    return ["%s: table %s has no column %s; fix verify.row or the schema" % (where, table, c)
            for c in want if c not in have]


def metric_errors(where, text, metric, stream_label):
    """Lines for a metric family absent from the /metrics text, or whose samples lack a contract label."""
    name = metric["name"]
    found = prometheus.samples(text, name)
    if not found:
        return ["%s: the service's /metrics has no %s samples; the contract names it (verify.metric.name)"
                % (where, name)]
    want = sorted(set((metric.get("labels") or {}).keys()) | {stream_label})
    missing = [label for label in want if not any(label in pair[0] for pair in found)]
    return ["%s: %s has no sample with the label %r; the contract needs it%s" % (
        where, name, label, " (migration.service_contract.stream_label)" if label == stream_label else
        " (verify.metric.labels)") for label in missing]
