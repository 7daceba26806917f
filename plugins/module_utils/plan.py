# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The migration plan (the inventory's ``migration``) checked as a whole before anything is written.

``plan_errors`` reads the plan alone, ``live_errors`` reads it against the cluster's streams (as
``$JS.API.STREAM.LIST`` returns them), ``plan_digest`` fingerprints it for the go/no-go journal, ``topology_digest``
what staging and production must share (plan_digests.py). Every mistake is one line: the inventory key, what is
wrong, what to do. Pure functions, no I/O; the readers of single values (durations, numbers, choices) are in
plan_values.py.
"""

from __future__ import annotations

from ansible_collections.athlete_ally.nats.plugins.module_utils import plan_values as v
from ansible_collections.athlete_ally.nats.plugins.module_utils import service_contract
# The digests (go/no-go, staging-to-production) live in plan_digests.py; they are part of this module's interface.
from ansible_collections.athlete_ally.nats.plugins.module_utils.plan_digests import (
    plan_digest, staging_errors, topology_digest)
# live_errors and group_summary are part of this module's interface; they live in plan_live.py for size.
from ansible_collections.athlete_ally.nats.plugins.module_utils.plan_live import group_summary, live_errors
from ansible_collections.athlete_ally.nats.plugins.module_utils.subjects import (
    covered, is_literal, name_problem, overlap)

__all__ = ["plan_errors", "live_errors", "plan_digest", "topology_digest", "group_summary"]

# The consumer keys roles/migration/tasks/shadow.yml creates consumers with: any other key would be ignored.
CONSUMER_KEYS = ("name", "filter_subject", "filter_subjects", "ack_policy", "ack_wait", "max_deliver",
                 "deliver_policy", "replay_policy", "max_ack_pending")
CONSUMER_CHOICES = {"ack_policy": ("explicit", "none", "all"), "replay_policy": ("instant", "original"),
                    # by_start_* would need a start the phase does not pass
                    "deliver_policy": ("all", "last", "new", "last_per_subject")}


def plan_errors(migration):
    """One line per mistake in the plan, each naming its inventory key and what to do."""
    if not isinstance(migration, dict):
        return ["migration: expected a mapping (the inventory's migration: key), got %s" % type(migration).__name__]
    e = v.Errors()
    legacy = _legacy(e, migration)
    groups = _groups(e, migration, legacy)
    _stream_defaults(e, migration, groups)
    _dlq(e, migration, legacy, groups)
    _coverage(e, legacy, groups)
    _modes(e, migration, legacy, groups)
    _service(e, migration)
    _timing(e, migration, groups)
    _thresholds(e, migration, groups)
    _backup(e, migration)
    staging_errors(e, migration)
    v.typos(e, "migration", migration, v.TOP_KEYS)
    return e.lines + list(service_contract.plan_errors(migration))


# -- legacy ---------------------------------------------------------------------------------
def _legacy(e, m):
    legacy = e.mapping("migration.legacy", m.get("legacy"))
    e.name("migration.legacy.stream", legacy.get("stream"), "stream")
    subjects = e.subjects("migration.legacy.subjects", legacy.get("subjects"))
    # Played with "| int": '14d' would read as 0 and phase 3 would delete the legacy stream at once.
    e.whole_seconds("migration.legacy.retention_seconds", legacy.get("retention_seconds"))
    e.boolean("migration.legacy.delete_requires_empty", legacy.get("delete_requires_empty"), required=False)
    return dict(stream=legacy.get("stream"), subjects=subjects)


# -- groups ---------------------------------------------------------------------------------
def _groups(e, m, legacy):
    raw = m.get("groups")
    if not isinstance(raw, list) or not raw:
        e.add("migration.groups", "missing or empty; list the subject groups, one per phase (phase, name, stream, "
                                  "subjects, max_age, consumers)")
        return []
    out, seen_phase, seen_name, seen_stream = [], {}, {}, {}
    for i, g in enumerate(raw):
        key = "migration.groups[%d]" % i
        if not isinstance(g, dict):
            e.add(key, "expected a mapping with phase, name, stream, subjects, got %r" % (g,))
            continue
        phase = e.integer(key + ".phase", g.get("phase"), low=1)
        if phase is not None:
            e.unique(key + ".phase", phase, seen_phase, "give each group its own phase number")
        if e.text(key + ".name", g.get("name")):
            e.unique(key + ".name", g["name"], seen_name, "give each group its own name")
        if e.name(key + ".stream", g.get("stream"), "stream"):
            e.unique(key + ".stream", g["stream"], seen_stream, "give each group its own stream")
            if g["stream"] == legacy["stream"]:
                e.add(key + ".stream", "%r is the legacy stream; give the group a new stream" % g["stream"])
        subjects = e.subjects(key + ".subjects", g.get("subjects"))
        e.duration(key + ".max_age", g.get("max_age"))
        _consumers(e, key, g, subjects)
        v.typos(e, key, g, v.GROUP_KEYS)
        out.append(dict(key=key, index=i, phase=phase, stream=g.get("stream"), subjects=subjects, group=g))
    phases = [g["phase"] for g in out if g["phase"] is not None]
    if phases != sorted(phases):
        e.add("migration.groups", "phases %s are not in ascending order; list the groups in phase order (the first "
                                  "phase deploys the image, the last one switches blue/green)" % phases)
    for a_pos, a in enumerate(out):  # wildcard-aware: vendor.> and vendor.oura.* share subjects
        for b in out[:a_pos]:
            for s in a["subjects"]:
                for t in b["subjects"]:
                    if overlap(s, t):
                        e.add(a["key"] + ".subjects", "%r overlaps %r of %s.subjects; put each subject in exactly "
                                                      "one group" % (s, t, b["key"]))
    return out


def _consumers(e, key, g, subjects):
    raw = g.get("consumers")
    if raw is None or raw == []:
        return
    if not isinstance(raw, list):
        e.add(key + ".consumers", "expected a list of consumers (or [] / absent for none), got %r" % (raw,))
        return
    seen, filters = {}, []
    for j, c in enumerate(raw):
        ckey = "%s.consumers[%d]" % (key, j)
        if not isinstance(c, dict):
            e.add(ckey, "expected a mapping with name, filter_subject, ack_policy, ..., got %r" % (c,))
            continue
        if e.name(ckey + ".name", c.get("name"), "consumer"):
            e.unique(ckey + ".name", c["name"], seen, "name each consumer once")
        mine = _filters(e, ckey, c, subjects)
        for other_name, theirs in filters:
            if any(overlap(x, y) for x in mine or [">"] for y in theirs or [">"]):
                e.workqueue_clashes.append((ckey, other_name))  # only a mistake on a workqueue stream
        filters.append((c.get("name"), mine))
        for option, choices in sorted(CONSUMER_CHOICES.items()):
            e.choice(ckey + "." + option, c.get(option), choices)
        e.duration(ckey + ".ack_wait", c.get("ack_wait"), positive=True)
        e.integer(ckey + ".max_deliver", c.get("max_deliver"), low=-1, nonzero=True)
        e.integer(ckey + ".max_ack_pending", c.get("max_ack_pending"), low=-1, required=False, nonzero=True)
        for extra in sorted(set(c) - set(CONSUMER_KEYS), key=str):
            e.add("%s.%s" % (ckey, extra), "is not applied: the phase creates consumers with %s only; remove it"
                  % ", ".join(CONSUMER_KEYS))


def _filters(e, ckey, c, subjects):
    one, many = c.get("filter_subject"), c.get("filter_subjects")
    if one is not None and many is not None:
        e.add(ckey, "sets both filter_subject and filter_subjects; keep one")
        return []
    if one is None and many is None:
        e.add(ckey + ".filter_subject", "missing; set the subject (inside the group's subjects) the consumer reads")
        return []
    key = ckey + (".filter_subject" if one is not None else ".filter_subjects")
    found = e.subjects(key, [one] if one is not None else many)
    for f in found:
        if subjects and not covered(f, subjects):
            e.add(key, "%r is not inside the group's subjects %s; filter on a subject the group's stream holds"
                  % (f, subjects))
    return found


def _coverage(e, legacy, groups):
    """Each group subject is literally a legacy subject (the cut-over moves exact strings), and each legacy subject
    is in a group (one in none would be deleted with the legacy stream in phase 3)."""
    held = legacy["subjects"]
    if not held or not groups:
        return
    for g in groups:
        others = [t for o in groups if o is not g for t in o["subjects"]]
        for s in g["subjects"]:
            if s in held or any(overlap(s, t) for t in others):  # an overlap between groups is reported already
                continue
            wider = [x for x in held if covered(s, [x])]
            how = ("it lies inside %r, but the cut-over moves exact subject strings: use %r in the group or split "
                   "the legacy subject" % (wider[0], wider[0])) if wider else \
                "add it to migration.legacy.subjects (and the stream) or remove it from the group"
            e.add(g["key"] + ".subjects", "%r is not one of migration.legacy.subjects %s; %s" % (s, held, how))
    for s in held:
        if not any(s in g["subjects"] for g in groups):
            e.add("migration.legacy.subjects", "%r is in no group; phase 3 would delete it with the legacy stream: "
                                               "add it to one group's subjects" % s)


# -- streams, DLQ, modes ----------------------------------------------------------------------
def _stream_defaults(e, m, groups):
    d = e.mapping("migration.stream_defaults", m.get("stream_defaults"))
    for option, choices in sorted(v.STREAM_CHOICES.items()):
        e.choice("migration.stream_defaults." + option, d.get(option), choices)
    e.integer("migration.stream_defaults.replicas", d.get("replicas"), low=1, high=5)
    e.integer("migration.stream_defaults.max_msgs", d.get("max_msgs"), low=-1)
    e.size("migration.stream_defaults.max_bytes", d.get("max_bytes"))
    window = e.duration("migration.stream_defaults.duplicate_window", d.get("duplicate_window"))
    for g in groups:  # the server refuses a duplicate window longer than max_age
        age = v.nanos(g["group"].get("max_age"))
        if window and age and window > age:
            e.add(g["key"] + ".max_age", "%s is shorter than migration.stream_defaults.duplicate_window %s; the "
                                         "server refuses that: raise max_age or shorten the window"
                  % (g["group"]["max_age"], d["duplicate_window"]))
    if d.get("retention") == "workqueue":
        for key, other in e.workqueue_clashes:
            e.add(key, "its filter overlaps consumer %s's; a workqueue stream needs disjoint filters: split them or "
                       "set migration.stream_defaults.retention to limits" % other)


def _window(m):
    d = m.get("stream_defaults")
    return d.get("duplicate_window") if isinstance(d, dict) else None


def _dlq(e, m, legacy, groups):
    d = e.mapping("migration.dlq", m.get("dlq"))
    if e.name("migration.dlq.stream", d.get("stream"), "stream"):
        others = [("migration.legacy.stream", legacy["stream"])]
        for key, other in others + [(g["key"] + ".stream", g["stream"]) for g in groups]:
            if d["stream"] == other:
                e.add(key, "%r is also migration.dlq.stream; give the DLQ and every group's stream its own name"
                      % other)
    subjects = e.subjects("migration.dlq.subjects", d.get("subjects"))
    taken = [("migration.legacy.subjects", s) for s in legacy["subjects"]]
    taken += [(g["key"] + ".subjects", s) for g in groups for s in g["subjects"]]
    for s in subjects:
        hit = next(((key, t) for key, t in taken if overlap(s, t)), None)  # the legacy's, or else a group's
        if hit:
            e.add("migration.dlq.subjects", "%r overlaps %r of %s; give the DLQ subjects of its own"
                  % (s, hit[1], hit[0]))
    age, window = e.duration("migration.dlq.max_age", d.get("max_age")), v.nanos(_window(m))
    if age and window and window > age:
        e.add("migration.dlq.max_age", "%s is shorter than migration.stream_defaults.duplicate_window %s; the server "
                                       "refuses that: raise max_age or shorten the window" % (d["max_age"], _window(m)))
    test = d.get("test_subject")
    if e.subject("migration.dlq.test_subject", test) and subjects and not (is_literal(test) and
                                                                           covered(test, subjects)):
        e.add("migration.dlq.test_subject", "%r must be one subject (no wildcard) inside migration.dlq.subjects %s"
              % (test, subjects))


def _modes(e, m, legacy, groups):
    taken = (legacy["stream"], (m.get("dlq") or {}).get("stream") if isinstance(m.get("dlq"), dict) else None)
    modes = e.mapping("migration.modes", m.get("modes"))
    named = {}
    for mode in ("single", "multi"):
        values = e.mapping("migration.modes." + mode, modes.get(mode), empty_ok=False)
        # Values are comma-separated lists; which variable carries the stream names is the services' business.
        named[mode] = {t.strip() for x in values.values() if isinstance(x, (str, int, float))
                       for t in str(x).split(",")}
    if modes.get("multi"):
        for g in groups:
            if name_problem(g["stream"]) is None and g["stream"] not in named["multi"] | set(taken):
                e.add("migration.modes.multi", "no value names %s (%s.stream); add it where the service lists the "
                                               "streams it reads" % (g["stream"], g["key"]))
    if modes.get("single") and name_problem(legacy["stream"]) is None and legacy["stream"] not in named["single"]:
        e.add("migration.modes.single", "no value names the legacy stream %s; add it where the service lists the "
                                        "streams it reads" % legacy["stream"])


def _service(e, m):
    e.text("migration.service", m.get("service"))
    if m.get("image") is not None:
        e.text("migration.image", m.get("image"))
    strategy = e.choice("migration.phase2_strategy", m.get("phase2_strategy"), ("env", "blue_green"))
    bg = m.get("blue_green")
    if strategy == "blue_green" or bg is not None:
        bg = e.mapping("migration.blue_green", bg)
        blue = e.text("migration.blue_green.blue", bg.get("blue"))
        if e.text("migration.blue_green.green", bg.get("green")) and blue:
            if bg["blue"] == bg["green"]:
                e.add("migration.blue_green.green", "is the same deployment as blue; name the green deployment")
        e.integer("migration.blue_green.replicas", bg.get("replicas"), low=1)
        e.whole_seconds("migration.blue_green.keep_seconds", bg.get("keep_seconds"))
    post = m.get("post")
    if post is not None:
        post = e.mapping("migration.post", post)
        e.boolean("migration.post.remove_verification_rows", post.get("remove_verification_rows"), required=False)
    if e.boolean("migration.staging_binding_check", m.get("staging_binding_check"), required=False):
        e.text("migration.staging_service", m.get("staging_service"))


# -- time, thresholds, backup ------------------------------------------------------------------
def _timing(e, m, groups):
    for name in ("drain_timeout", "drain_stall_timeout", "catchup_timeout", "preflight_valid_for"):
        e.duration("migration." + name, m.get(name), positive=True)
    for name in ("verify_poll_interval", "converge_timeout", "bind_timeout", "bind_settle_seconds",
                 "rollback_stall_timeout"):
        e.duration("migration." + name, m.get(name), required=False)
    e.duration("migration.soak_poll_seconds", m.get("soak_poll_seconds"), positive=True)
    soak = e.mapping("migration.soak_seconds", m.get("soak_seconds"))
    by_phase = {str(k): x for k, x in soak.items()}
    for phase in [0] + [g["phase"] for g in groups if g["phase"] is not None]:
        e.duration("migration.soak_seconds[%d]" % phase, by_phase.get(str(phase)), what="soak window of phase %d"
                   % phase)


def _thresholds(e, m, groups):
    alerts = e.mapping("migration.alerts", m.get("alerts"))
    e.integer("migration.alerts.consumer_lag", alerts.get("consumer_lag"), low=0)
    e.duration("migration.alerts.consumer_lag_seconds", alerts.get("consumer_lag_seconds"))
    e.number("migration.alerts.error_rate", alerts.get("error_rate"), low=0, high=1)
    e.number("migration.alerts.no_inserts_seconds", alerts.get("no_inserts_seconds"), low=0, required=False)
    e.number("migration.backlog_max", m.get("backlog_max"), low=0)
    t = e.mapping("migration.thresholds", m.get("thresholds"))
    e.number("migration.thresholds.error_rate", t.get("error_rate"), low=0, high=1)
    e.number("migration.thresholds.rate_min_ratio", t.get("rate_min_ratio"), low=0)
    e.whole_seconds("migration.thresholds.rate_window_seconds", t.get("rate_window_seconds"), positive=True)
    e.integer("migration.thresholds.log_lines", t.get("log_lines"), low=1)
    pending = t.get("max_pending")
    if pending is None or not groups:
        return
    pending = e.mapping("migration.thresholds.max_pending", pending)
    names = {c.get("name") for g in groups for c in g["group"].get("consumers") or [] if isinstance(c, dict)}
    for name, limit in pending.items():
        key = "migration.thresholds.max_pending.%s" % name
        if name not in names:
            e.add(key, "names no consumer of any group (%s); fix the name or remove it"
                  % (", ".join(sorted(str(n) for n in names)) or "none"))
        e.integer(key, limit, low=0)


def _backup(e, m):
    b = e.mapping("migration.backup", m.get("backup"))
    kind = e.choice("migration.backup.type", b.get("type"), ("none", "rds", "file"))
    where = {"rds": "instance", "file": "path"}.get(kind)
    if where:
        e.text("migration.backup." + where, b.get(where))
        e.duration("migration.backup.max_age", b.get("max_age"), positive=True,
                   what="the oldest backup a migration may start with, e.g. 6h")
