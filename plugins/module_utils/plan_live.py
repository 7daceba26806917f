# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The migration plan against the live cluster: the streams (``$JS.API.STREAM.LIST`` infos, ``{config, state}``)
must be where the plan says, or where a partly done migration left them. Used through plan.py; pure, no I/O.

A plan that is itself wrong (plan_errors) is still read here without failing: what cannot be read is skipped.
"""

from __future__ import annotations

from ansible_collections.athlete_ally.nats.plugins.module_utils import journal
from ansible_collections.athlete_ally.nats.plugins.module_utils.config_diff import own_subjects
from ansible_collections.athlete_ally.nats.plugins.module_utils.subjects import overlap, subset

JOURNAL_PREFIX = journal.PREFIX  # docs/JOURNAL.md


def strings(value):
    """The strings of a list (anything else: none)."""
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


def _text(value):
    return value if isinstance(value, str) and value else None


def _groups(migration):
    raw = migration.get("groups")
    out = []
    for i, g in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(g, dict):
            consumers = g.get("consumers") if isinstance(g.get("consumers"), list) else []
            out.append(dict(key="migration.groups[%d]" % i, phase=g.get("phase"), name=g.get("name"),
                            stream=_text(g.get("stream")), subjects=strings(g.get("subjects")),
                            consumers=[c.get("name") for c in consumers if isinstance(c, dict)]))
    return out


def _journal_time(info, phase, field):
    try:
        return journal.journal_time(journal.journal_of(info, phase), field)
    except (TypeError, ValueError):  # a plan whose phase is not a number: plan_errors names it
        return 0


def _in_limbo(legacy_info, new_info, phase):
    """A move of this phase was interrupted between its two updates (the journal of the first one is there, the
    second's is not): its subjects are on neither stream, and re-running the phase or the rollback finishes it."""
    cut = _journal_time(legacy_info, phase, "cutover_at")
    back = _journal_time(new_info, phase, "rolled_back_at")
    return bool((cut and _journal_time(new_info, phase, "cutover_at") < cut) or
                (back and _journal_time(legacy_info, phase, "rolled_back_at") < back))


def _belongs(info, legacy, subjects):
    """A stream with a group's name is that group's when it sources from the legacy stream, holds some of the
    group's subjects or carries the migration's journal."""
    cfg = info.get("config") or {}
    meta = cfg.get("metadata") or {}
    return (any(s.get("name") == legacy for s in cfg.get("sources") or [] if isinstance(s, dict)) or
            any(overlap(s, t) for s in subjects for t in own_subjects(cfg)) or
            any(str(k).startswith(JOURNAL_PREFIX) for k in meta))


def live_errors(migration, streams):
    """One line per way the cluster contradicts the plan."""
    m = migration if isinstance(migration, dict) else {}
    by_name = {((i or {}).get("config") or {}).get("name"): i for i in streams or []}
    legacy = _text((m.get("legacy") or {}).get("stream")) if isinstance(m.get("legacy"), dict) else None
    dlq = m.get("dlq") if isinstance(m.get("dlq"), dict) else {}
    legacy_info = by_name.get(legacy)
    planned = strings((m.get("legacy") or {}).get("subjects")) if isinstance(m.get("legacy"), dict) else []
    legacy_held = own_subjects((legacy_info or {}).get("config"))
    groups, lines = _groups(m), []
    held = {}
    for g in groups:
        info = by_name.get(g["stream"])
        if info is None:
            held[g["stream"]] = []
        elif _belongs(info, legacy, g["subjects"]):
            held[g["stream"]] = own_subjects(info.get("config"))
        else:
            lines.append("%s.stream: stream %s exists at the cluster and is not this group's (it does not source "
                         "from %s, holds none of %s and has no %s* metadata); choose another stream name or remove "
                         "that stream" % (g["key"], g["stream"], legacy, g["subjects"], JOURNAL_PREFIX))
    if legacy and legacy_info is None:
        waiting = [g["key"] for g in groups if not set(g["subjects"]) <= set(held.get(g["stream"]) or [])]
        if waiting:
            lines.append("migration.legacy.stream: stream %s does not exist at the cluster and %s are not on their "
                         "own streams yet; check the stream name and nats_servers" % (legacy, ", ".join(waiting)))
    for g in groups:
        mine = held.get(g["stream"]) or []
        for s in mine:
            if s not in g["subjects"]:
                lines.append("%s.subjects: stream %s holds %r, which the group does not list; add it to the group "
                             "or remove it from the stream" % (g["key"], g["stream"], s))
        if legacy_info is None or _in_limbo(legacy_info, by_name.get(g["stream"]), g["phase"]):
            continue
        others = [t for o in groups if o is not g for t in o["subjects"]]
        for s in g["subjects"]:
            # plan_errors reports a subject the plan's legacy.subjects lack or another group claims: one line each
            if s in legacy_held or s in mine or s not in planned or any(overlap(s, t) for t in others):
                continue
            wider = [x for x in legacy_held if subset(s, x)]
            how = ("only inside %r there, and the cut-over moves exact subject strings: list %r in the group"
                   % (wider[0], wider[0])) if wider else "add it to the legacy stream or remove it from the group"
            lines.append("%s.subjects: %r is held neither by the legacy stream %s (%s) nor by %s; %s"
                         % (g["key"], s, legacy, legacy_held, g["stream"], how))
    listed = {s for g in groups for s in g["subjects"]}
    for s in legacy_held:
        if s not in listed and s not in planned:  # one the plan lists is reported by plan_errors already
            lines.append("migration.groups: the legacy stream %s holds %r, which no group lists; phase 3 would "
                         "delete it with the stream: add it to a group's subjects" % (legacy, s))
    lines += _unrelated(by_name, legacy, dlq, groups)
    return lines


def _unrelated(by_name, legacy, dlq, groups):
    """Streams outside the migration holding what the plan's streams are about to hold."""
    dlq_name, dlq_subjects = _text(dlq.get("stream")), strings(dlq.get("subjects"))
    ours = {legacy, dlq_name} | {g["stream"] for g in groups}
    claims = [(g["key"] + ".subjects", s) for g in groups for s in g["subjects"]]
    claims += [("migration.dlq.subjects", s) for s in dlq_subjects]
    lines = []
    for name in sorted(n for n in by_name if n not in ours and isinstance(n, str)):
        theirs = own_subjects(by_name[name].get("config"))
        for key, s in claims:
            for t in theirs:
                if overlap(s, t):
                    lines.append("%s: %r overlaps %r of stream %s, which is not part of the migration; move that "
                                 "subject off %s or out of the plan" % (key, s, t, name, name))
    dlq_info = by_name.get(dlq_name)
    if dlq_info is not None and dlq_subjects:
        live = own_subjects(dlq_info.get("config"))
        if live and not any(overlap(s, t) for s in dlq_subjects for t in live):
            lines.append("migration.dlq.stream: stream %s exists with subjects %s, none of migration.dlq.subjects %s; "
                         "phase 0 would replace them: choose another DLQ stream name or fix the subjects"
                         % (dlq_name, live, dlq_subjects))
    return lines


def group_summary(migration, streams=None):
    """A short line of data per group; with ``streams``, where each subject is (legacy, own or neither)."""
    m = migration if isinstance(migration, dict) else {}
    out = []
    by_name = {((i or {}).get("config") or {}).get("name"): i for i in streams or []} if streams is not None else None
    legacy = _text((m.get("legacy") or {}).get("stream")) if isinstance(m.get("legacy"), dict) else None
    for g in _groups(m):
        row = {k: g[k] for k in ("phase", "name", "stream", "subjects", "consumers")}
        if by_name is not None:
            on_legacy = own_subjects((by_name.get(legacy) or {}).get("config"))
            on_own = own_subjects((by_name.get(g["stream"]) or {}).get("config"))
            row["placement"] = {s: "legacy" if s in on_legacy else "own" if s in on_own else "neither"
                                for s in g["subjects"]}
        out.append(row)
    return out
