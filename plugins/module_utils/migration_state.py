# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Where the migration stands, read from the cluster in one call: the one source of truth for every playbook.

For each subject group: where its subjects are (legacy / new / both / neither), the shadow sources with their
start seq and lag, each consumer's state on both streams (backlog and whether a reader is attached), the
journal the modules wrote into the streams' metadata (docs/JOURNAL.md), and the step derived from all of it.
Nothing here writes; ``wait_for`` polls until a converging condition holds (bounded, progress, last state).
"""

from __future__ import annotations

import datetime
import functools
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils import waiter
from ansible_collections.athlete_ally.nats.plugins.module_utils.client import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.config_diff import own_subjects

PREFIX = "aa.migration."
# In the order a phase goes through them; rolled_back sorts with not_started (nothing of the group is moved).
STEPS = ["not_started", "rolled_back", "shadow_ready", "bound", "in_limbo", "cut_over", "caught_up", "verified",
         "complete"]
CUT_OVER_STEPS = ("cut_over", "caught_up", "verified", "complete")
# A pull consumer whose last ack is this recent counts as read even between two pull requests.
READER_ACTIVE_SECONDS = 5.0


# -- journal --------------------------------------------------------------------------------
def journal_key(phase, field):
    return "%sphase%s.%s" % (PREFIX, phase, field)


def journal_of(info, phase):
    """``{field: value}`` of one phase's journal entries in a stream info (or {})."""
    meta = ((info or {}).get("config") or {}).get("metadata") or {}
    head = "%sphase%s." % (PREFIX, phase)
    return {k[len(head):]: v for k, v in meta.items() if k.startswith(head)}


def journal_time(entry, field):
    try:
        return int(entry.get(field) or 0)
    except (TypeError, ValueError):
        return 0


def now_epoch():
    return int(time.time())


def move_journal(record, phase):
    """``journal(cutover_seq) -> (entries for the stream giving the subjects up, entries for the one taking them)``
    for jetstream_subject_move: the record goes into the same two updates as the move it records."""
    at = now_epoch()
    phase = int(phase)

    def cutover(cutover_seq):
        dst = {journal_key(phase, "cutover_at"): at}
        if cutover_seq is not None:
            dst[journal_key(phase, "cutover_seq")] = cutover_seq
        return {PREFIX + "phase": phase, journal_key(phase, "cutover_at"): at}, dst

    def rollback(_cutover_seq):
        return ({journal_key(phase, "rolled_back_at"): at},
                {journal_key(phase, "rolled_back_at"): at, PREFIX + "phase": phase - 1})

    return cutover if record == "cutover" else rollback


def missing_move_record(record, phase, from_info, to_info):
    """Entries the stream taking the subjects lacks when the move itself is already done (an older run, or a
    run killed after a move that did not record it): derived from the streams, to be written with a warning."""
    if record == "cutover":
        have = journal_of(to_info, phase)
        out = {}
        if not have.get("cutover_seq"):
            # The legacy stream's last seq now bounds the cut-over seq from above.
            out[journal_key(phase, "cutover_seq")] = str(((from_info or {}).get("state") or {}).get("last_seq", 0))
        if not have.get("cutover_at"):
            # Now is the latest the cut-over can have been: the retention clock never starts too early.
            out[journal_key(phase, "cutover_at")] = str(now_epoch())
        return out
    back = journal_time(journal_of(to_info, phase), "rolled_back_at")
    if back and back >= journal_time(journal_of(from_info, phase), "cutover_at"):
        return {}
    return {journal_key(phase, "rolled_back_at"): str(now_epoch()), PREFIX + "phase": str(int(phase) - 1)}


# -- subjects -------------------------------------------------------------------------------
def placement(subjects, legacy_cfg, new_cfg):
    """``{subject: legacy | new | both | neither}`` for each of the group's subjects."""
    on_legacy = set(own_subjects(legacy_cfg)) if legacy_cfg else set()
    on_new = set(own_subjects(new_cfg)) if new_cfg else set()
    out = {}
    for subject in subjects:
        where = [name for name, held in (("legacy", on_legacy), ("new", on_new)) if subject in held]
        out[subject] = "both" if len(where) == 2 else (where[0] if where else "neither")
    return out


# -- consumers ------------------------------------------------------------------------------
def _age_seconds(stamp, now):
    """Seconds since an RFC 3339 timestamp from the server (None when absent or unreadable)."""
    if not stamp or stamp.startswith("0001-"):
        return None
    text = stamp.rstrip("Z")
    if "." in text:  # the server writes nanoseconds; Python reads at most microseconds
        head, frac = text.split(".", 1)
        digits = "".join(c for c in frac if c.isdigit())
        text = "%s.%s" % (head, digits[:6])
    try:
        when = datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return (now - when).total_seconds()


def consumer_state(info, now=None):
    """Backlog and reader of one consumer info reply (None: no such consumer)."""
    if info is None:
        return dict(exists=False)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    delivered = info.get("delivered") or {}
    floor = info.get("ack_floor") or {}
    ack_age = _age_seconds(floor.get("last_active"), now)
    reader = bool(info.get("num_waiting") or info.get("push_bound") or
                  (ack_age is not None and ack_age <= READER_ACTIVE_SECONDS))
    return dict(
        exists=True,
        num_pending=info.get("num_pending", 0),
        num_ack_pending=info.get("num_ack_pending", 0),
        num_waiting=info.get("num_waiting", 0),
        delivered_stream_seq=delivered.get("stream_seq", 0),
        ack_floor_stream_seq=floor.get("stream_seq", 0),
        last_ack_seconds_ago=None if ack_age is None else round(ack_age, 1),
        reader=reader,
        behind=info.get("num_pending", 0) + info.get("num_ack_pending", 0),
    )


# -- one group ------------------------------------------------------------------------------
def _sources(new_info, legacy_name):
    cfg = (new_info or {}).get("config") or {}
    live = {(s.get("name"), s.get("filter_subject")): s for s in (new_info or {}).get("sources") or []}
    out = []
    for src in cfg.get("sources") or []:
        if src.get("name") != legacy_name or src.get("external"):
            continue
        seen = live.get((src.get("name"), src.get("filter_subject"))) or {}
        out.append(dict(filter_subject=src.get("filter_subject"), opt_start_seq=src.get("opt_start_seq"),
                        lag=seen.get("lag"), active_ns=seen.get("active"),
                        error=(seen.get("error") or {}).get("description")))
    return out


def derive_step(group):
    """The step a group is at, from its placement, sources, consumers and journal."""
    where = set(group["placement"].values())
    journal = group["journal"]
    cut_at = journal_time(journal, "cutover_at")
    if where == {"legacy"}:
        if not group["exists"]:
            back = journal_time(group["legacy_journal"], "rolled_back_at")
            return "rolled_back" if back else "not_started"
        consumers = group["consumers"].values()
        if not all(c["new"]["exists"] for c in consumers):
            return "not_started"
        return "bound" if all(c["new"]["reader"] for c in consumers) else "shadow_ready"
    if where != {"new"}:
        return "in_limbo"
    if group["sources"]:
        return "cut_over"
    if cut_at and journal_time(journal, "completed_at") >= cut_at:
        return "complete"
    if cut_at and journal_time(journal, "verified_at") >= cut_at:
        return "verified"
    return "caught_up"


def group_state(js, spec, legacy_name, legacy_info):
    new_info = js.stream_info(spec["stream"])
    names = [c["name"] if isinstance(c, dict) else c for c in spec.get("consumers") or []]
    now = datetime.datetime.now(datetime.timezone.utc)
    consumers = {}
    for name in names:
        consumers[name] = dict(
            legacy=consumer_state(js.consumer_info(legacy_name, name) if legacy_info else None, now),
            new=consumer_state(js.consumer_info(spec["stream"], name) if new_info else None, now))
    where = placement(spec["subjects"], (legacy_info or {}).get("config"), (new_info or {}).get("config"))
    group = dict(
        phase=int(spec["phase"]), stream=spec["stream"], subjects=list(spec["subjects"]),
        exists=new_info is not None,
        placement=where,
        on_legacy=[s for s in spec["subjects"] if where[s] in ("legacy", "both")],
        on_new=[s for s in spec["subjects"] if where[s] in ("new", "both")],
        in_limbo=[s for s in spec["subjects"] if where[s] == "neither"],
        sources=_sources(new_info, legacy_name),
        consumers=consumers,
        journal=journal_of(new_info, spec["phase"]),
        legacy_journal=journal_of(legacy_info, spec["phase"]),
        new_subjects=own_subjects((new_info or {}).get("config") or {}),
        last_seq=((new_info or {}).get("state") or {}).get("last_seq", 0),
    )
    if "both" in where.values():
        raise JetStreamError("%s and %s both list %s; two streams cannot own one subject, so the topology was "
                             "changed by hand: fix it before running the migration"
                             % (legacy_name, spec["stream"], [s for s, w in where.items() if w == "both"]))
    group["step"] = derive_step(group)
    group["behind"] = sum(c["new"].get("behind", 0) for c in consumers.values())
    group["journal_missing"] = (missing_move_record("cutover", group["phase"], legacy_info, new_info)
                                if group["step"] in CUT_OVER_STEPS else {})
    return group


def read(js, legacy_name, groups):
    """The whole migration: legacy stream and every group, keyed by phase (as strings, for Jinja)."""
    legacy_info = js.stream_info(legacy_name)
    legacy_cfg = (legacy_info or {}).get("config") or {}
    out = dict(
        legacy=dict(name=legacy_name, exists=legacy_info is not None, subjects=own_subjects(legacy_cfg),
                    last_seq=((legacy_info or {}).get("state") or {}).get("last_seq", 0),
                    messages=((legacy_info or {}).get("state") or {}).get("messages", 0),
                    phase=int((legacy_cfg.get("metadata") or {}).get(PREFIX + "phase") or 0)),
        groups={},
    )
    for spec in sorted(groups, key=lambda g: int(g["phase"])):
        out["groups"][str(spec["phase"])] = group_state(js, spec, legacy_name, legacy_info)
    moved = [int(p) for p, g in out["groups"].items() if g["step"] in CUT_OVER_STEPS]
    out["phase"] = max(moved) if moved else 0
    out["steps"] = {p: g["step"] for p, g in out["groups"].items()}
    return out


# -- waiting --------------------------------------------------------------------------------
def _readers(group, side):
    return {name: c[side]["reader"] for name, c in group["consumers"].items()}


CONDITIONS = {
    # every durable of the group has a reader on the new stream
    "bound": lambda g: all(c["new"]["reader"] for c in g["consumers"].values()),
    # every durable has a reader on the legacy stream (rollback, single mode)
    "bound_legacy": lambda g: all(c["legacy"]["reader"] for c in g["consumers"].values()),
    # nothing waits on the new stream's consumers
    "drained": lambda g: g["behind"] == 0,
    # after a rollback, the legacy consumers read and their backlog is back under the limit (recovery)
    "recovered": lambda g, limit=0: all(c["legacy"]["reader"] for c in g["consumers"].values())
    and legacy_behind(g) <= limit,
}


def legacy_behind(group):
    return sum(c["legacy"].get("behind", 0) for c in group["consumers"].values())


def describe(group, condition):
    if condition == "recovered":
        return "legacy backlog %d, readers %s" % (legacy_behind(group), _readers(group, "legacy"))
    if condition in ("bound", "bound_legacy"):
        side = "new" if condition == "bound" else "legacy"
        return "readers on %s: %s" % (side, _readers(group, side))
    return "behind on %s: %s" % (group["stream"], {n: c["new"].get("behind") for n, c in group["consumers"].items()})


class Stalled(Exception):
    """``drained`` made no progress (the backlog did not shrink) for the stall timeout."""

    def __init__(self, line, last, seconds):
        super().__init__(line)
        self.line, self.last, self.seconds = line, last, seconds


def wait_for(js, legacy_name, groups, phase, condition, timeout, poll=0.5, progress=None, stall=None, limit=0):
    """Read until ``condition`` holds for group ``phase``; on timeout fail with the last state seen. With ``stall``
    (seconds, ``drained`` only), give up early once the backlog has not shrunk for that long: a consumer nobody
    processes (a service crash-looping) would otherwise be waited on for the whole timeout."""
    test = functools.partial(CONDITIONS[condition], limit=limit) if condition == "recovered" else CONDITIONS[condition]
    best = {"behind": None, "since": time.monotonic()}

    def holds(st):
        group = st["groups"][str(phase)]
        if test(group):
            return True
        if stall is not None and condition == "drained":
            if best["behind"] is None or group["behind"] < best["behind"]:
                best.update(behind=group["behind"], since=time.monotonic())
            elif time.monotonic() - best["since"] >= stall:
                raise Stalled(describe(group, condition), st, round(time.monotonic() - best["since"], 1))
        return False

    try:
        state, waited = waiter.poll_until(
            lambda: read(js, legacy_name, groups), holds,
            lambda st: describe(st["groups"][str(phase)], condition), timeout, poll=poll, progress=progress)
    except waiter.TimedOut as exc:
        raise JetStreamError("phase %s: still not %s after %ss (%s); check the service and its logs, or raise "
                             "the timeout" % (phase, condition, timeout, exc.line), state=exc.last)
    except Stalled as exc:
        raise JetStreamError("phase %s: not %s and no progress for %ss (%s); the service is not processing them"
                             % (phase, condition, exc.seconds, exc.line), state=exc.last, stalled=True)
    state["waited_seconds"] = waited
    return state
