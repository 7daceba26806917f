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
import math
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils import journal, waiter
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.config_diff import own_subjects

# In the order a phase goes through them; rolled_back sorts with not_started (nothing of the group is moved) and
# in_limbo (a move interrupted between its two updates) between bound and cut_over. Every decision a playbook takes
# on a step comes from plan() below, derived from this list: no task file spells steps or their order.
STEPS = ["not_started", "rolled_back", "shadow_ready", "bound", "in_limbo", "cut_over", "caught_up", "verified",
         "complete"]
# A group's path through a phase: the steps a run of it goes through (rolled_back and in_limbo are states a run
# starts from, never steps it reaches).
PATH = [s for s in STEPS if s not in ("rolled_back", "in_limbo")]
CUT_OVER_STEPS = tuple(STEPS[STEPS.index("cut_over"):])
# A pull consumer whose last ack is this recent counts as read even between two pull requests.
READER_ACTIVE_SECONDS = 5.0


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
    entry = group["journal"]
    cut_at = journal.journal_time(entry, "cutover_at")
    if where == {"legacy"}:
        if not group["exists"]:
            back = journal.journal_time(group["legacy_journal"], "rolled_back_at")
            return "rolled_back" if back else "not_started"
        consumers = group["consumers"].values()
        if not all(c["new"]["exists"] for c in consumers):
            return "not_started"
        return "bound" if all(c["new"]["reader"] for c in consumers) else "shadow_ready"
    if where != {"new"}:
        return "in_limbo"
    if group["sources"]:
        return "cut_over"
    if cut_at and journal.journal_time(entry, "completed_at") >= cut_at:
        return "complete"
    if cut_at and journal.journal_time(entry, "verified_at") >= cut_at:
        return "verified"
    return "caught_up"


# -- what is left, and the clocks ---------------------------------------------------------------
def _rank(step):
    return STEPS.index("not_started" if step == "rolled_back" else step)


def clock(start, seconds, now):
    """``(at, reached, seconds_left)`` of a wait of ``seconds`` from the journal time ``start`` (Unix seconds):
    ``(None, False, None)`` when either is unknown, so a clock without its start never runs out."""
    if not start or seconds is None:
        return None, False, None
    at = int(start) + int(seconds)
    left = max(0, math.ceil(at - now))  # whole seconds, rounded up: "0 left" means it has run out
    return at, now >= at, left


def rollback_left(group):
    """What a rollback of the group still has to do: subjects to move back, the shadow sources to stop, what the
    new stream's consumers hold (``{name: {pending, ack_pending}}``), and whether the new stream is still there."""
    return dict(
        subjects=[s for s, where in group["placement"].items() if where != "legacy"],
        sources=bool(group["sources"]),
        consumers={name: dict(pending=c["new"].get("num_pending", 0), ack_pending=c["new"].get("num_ack_pending", 0))
                   for name, c in group["consumers"].items() if c["new"].get("behind", 0) > 0},
        stream=group["exists"],
    )


def plan(group, now, legacy_retention=None, blue_keep=None):
    """The group's plan, from STEPS and its journal: what a run of its phase still does and when its clocks run out.

    ``cutover_ahead``: the steps before the cut-over (shadow, bind, verification) are still to do; ``moved``: the
    subjects are on the new stream; ``verify_ahead``: the post-cut-over verification is still to do. The legacy
    stream may be deleted ``legacy_retention`` seconds after the cut-over (Day 14), blue removed ``blue_keep``
    seconds after it was scaled down (Step 2.10); ``now`` is Unix seconds (the caller's clock, one per read)."""
    step = group["step"]
    rank = _rank(step)
    left = [s for s in PATH if _rank(s) > rank]
    cut_at = journal.journal_time(group["journal"], "cutover_at") or None
    blue_at = journal.journal_time(group["journal"], "blue_scaled_down_at") or None
    delete_at, delete_ok, delete_left = clock(cut_at, legacy_retention, now)
    blue_remove_at, blue_ok, blue_left = clock(blue_at, blue_keep, now)
    return dict(
        next_step=left[0] if left else None,
        steps_left=left,
        cutover_ahead=rank < _rank("in_limbo"),
        moved=step in CUT_OVER_STEPS,
        verify_ahead=rank < _rank("verified"),
        complete=step == "complete",
        cutover_at=cut_at,
        cutover_seq=journal.number(group["journal"].get("cutover_seq")) or None,
        delete_allowed_at=delete_at, delete_allowed=delete_ok, delete_seconds_left=delete_left,
        blue_scaled_down_at=blue_at,
        blue_remove_at=blue_remove_at, blue_removable=blue_ok, blue_seconds_left=blue_left,
        rollback_left=rollback_left(group),
    )


def legacy_delete(groups, now, legacy_retention=None):
    """Phase 3's decision (Day 14): every group cut over with its record, the latest cut-over, and whether the
    retention after it has run out. ``groups``: the group states of read()."""
    moved = all(g["plan"]["moved"] for g in groups)
    missing = sorted(g["phase"] for g in groups if g["journal_missing"] or not g["plan"]["moved"])
    cut_at = max([g["plan"]["cutover_at"] or 0 for g in groups] or [0]) or None
    at, allowed, left = clock(cut_at, legacy_retention, now)
    return dict(
        ready=moved and not missing, not_ready_phases=missing,
        cutover_at=cut_at,
        cutover_seq=max([g["plan"]["cutover_seq"] or 0 for g in groups] or [0]),
        retention_seconds=legacy_retention,
        allowed_at=at, allowed=bool(moved and not missing and allowed), seconds_left=left,
    )


def group_state(js, spec, legacy_name, legacy_info, now=None, legacy_retention=None, blue_keep=None):
    now = time.time() if now is None else now
    new_info = js.stream_info(spec["stream"])
    names = [c["name"] if isinstance(c, dict) else c for c in spec.get("consumers") or []]
    at = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    consumers = {}
    for name in names:
        consumers[name] = dict(
            legacy=consumer_state(js.consumer_info(legacy_name, name) if legacy_info else None, at),
            new=consumer_state(js.consumer_info(spec["stream"], name) if new_info else None, at))
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
        journal=journal.journal_of(new_info, spec["phase"]),
        legacy_journal=journal.journal_of(legacy_info, spec["phase"]),
        new_subjects=own_subjects((new_info or {}).get("config") or {}),
        last_seq=((new_info or {}).get("state") or {}).get("last_seq", 0),
    )
    if "both" in where.values():
        raise JetStreamError("%s and %s both list %s; two streams cannot own one subject, so the topology was "
                             "changed by hand: fix it before running the migration"
                             % (legacy_name, spec["stream"], [s for s, w in where.items() if w == "both"]))
    group["step"] = derive_step(group)
    group["behind"] = sum(c["new"].get("behind", 0) for c in consumers.values())
    group["journal_missing"] = (journal.missing_move_record("cutover", group["phase"], legacy_info, new_info, now)
                                if group["step"] in CUT_OVER_STEPS else {})
    group["plan"] = plan(group, now, legacy_retention, blue_keep)
    return group


def read(js, legacy_name, groups, now=None, legacy_retention=None, blue_keep=None):
    """The whole migration: legacy stream and every group. ``groups`` is keyed by phase (a JSON object's keys are
    strings: look a group up with group_of, or take ``last``, the group with the highest phase); each group carries
    its ``phase`` as an int. ``now`` (Unix seconds) is the one clock of the read."""
    now = time.time() if now is None else now
    legacy_info = js.stream_info(legacy_name)
    legacy_cfg = (legacy_info or {}).get("config") or {}
    ordered = [group_state(js, spec, legacy_name, legacy_info, now, legacy_retention, blue_keep)
               for spec in sorted(groups, key=lambda g: int(g["phase"]))]
    moved = [g["phase"] for g in ordered if g["step"] in CUT_OVER_STEPS]
    blue = [g["plan"] for g in ordered if g["plan"]["blue_scaled_down_at"]]
    return dict(
        legacy=dict(name=legacy_name, exists=legacy_info is not None, subjects=own_subjects(legacy_cfg),
                    last_seq=((legacy_info or {}).get("state") or {}).get("last_seq", 0),
                    messages=((legacy_info or {}).get("state") or {}).get("messages", 0),
                    phase=journal.legacy_phase(legacy_cfg.get("metadata"))),
        groups={str(g["phase"]): g for g in ordered},
        phase=max(moved) if moved else 0,
        steps={str(g["phase"]): g["step"] for g in ordered},
        first_phase=ordered[0]["phase"] if ordered else None,
        last_phase=ordered[-1]["phase"] if ordered else None,
        last=ordered[-1] if ordered else None,
        # the subjects of the groups whose cut-over is still ahead: all the legacy stream may still own
        unmoved_subjects=[s for g in ordered if g["plan"]["cutover_ahead"] for s in g["subjects"]],
        all_complete=all(g["plan"]["complete"] for g in ordered),
        legacy_delete=legacy_delete(ordered, now, legacy_retention),
        # Step 2.10's clock, on the group that recorded it (the last one under option B)
        blue=dict((k[len("blue_"):], v) for k, v in blue[-1].items() if k.startswith("blue_")) if blue else dict(
            scaled_down_at=None, remove_at=None, removable=False, seconds_left=None),
    )


def group_of(state, phase):
    """One group of a read() result by its phase (int or numeric string, as ``-e migration_phase=N`` gives it)."""
    return state["groups"].get(str(int(phase)))


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


def wait_for(js, legacy_name, groups, phase, condition, timeout, poll=0.5, progress=None, stall=None, limit=0,
             **clocks):
    """Read until ``condition`` holds for group ``phase`` (every group when ``phase`` is None); on timeout fail with
    the last state seen. With ``stall`` (seconds, ``drained`` only), give up early once the backlog has not shrunk
    for that long: a consumer nobody processes (a service crash-looping) would otherwise be waited on for the whole
    timeout. ``clocks``: read()'s ``legacy_retention`` and ``blue_keep``."""
    test = functools.partial(CONDITIONS[condition], limit=limit) if condition == "recovered" else CONDITIONS[condition]
    best = {"behind": None, "since": time.monotonic()}
    what = "every group" if phase is None else "phase %s" % phase

    def watched(st):
        return list(st["groups"].values()) if phase is None else [group_of(st, phase)]

    def line(st):
        return "; ".join("phase %s: %s" % (g["phase"], describe(g, condition)) if phase is None
                         else describe(g, condition) for g in watched(st) if not test(g)) or "holds"

    def holds(st):
        if all(test(g) for g in watched(st)):
            return True
        if stall is not None and condition == "drained" and phase is not None:
            group = group_of(st, phase)
            if best["behind"] is None or group["behind"] < best["behind"]:
                best.update(behind=group["behind"], since=time.monotonic())
            elif time.monotonic() - best["since"] >= stall:
                raise Stalled(describe(group, condition), st, round(time.monotonic() - best["since"], 1))
        return False

    try:
        state, waited = waiter.poll_until(
            lambda: read(js, legacy_name, groups, **clocks), holds, line, timeout, poll=poll, progress=progress)
    except waiter.TimedOut as exc:
        raise JetStreamError("%s: still not %s after %ss (%s); check the service and its logs, or raise "
                             "the timeout" % (what, condition, timeout, exc.line), state=exc.last)
    except Stalled as exc:
        raise JetStreamError("%s: not %s and no progress for %ss (%s); the service is not processing them"
                             % (what, condition, exc.seconds, exc.line), state=exc.last, stalled=True)
    state["waited_seconds"] = waited
    return state


# -- the module --------------------------------------------------------------------------------
def run(module, js):
    """The migration_state module: read (or wait for a condition), the group of ``phase`` as ``group``."""
    p = module.params
    for i, group in enumerate(p["groups"]):
        missing = [k for k in ("phase", "stream", "subjects") if group.get(k) in (None, "", [])]
        if missing:
            raise JetStreamError("groups[%d] lacks %s; each group needs phase, stream, subjects and consumers"
                                 % (i, ", ".join(missing)))
    phases = sorted(int(g["phase"]) for g in p["groups"])
    if p["phase"] is not None and p["phase"] not in phases:
        raise JetStreamError("phase %s is not a phase of groups (%s): pass one of migration.groups[].phase"
                             % (p["phase"], ", ".join(str(n) for n in phases)))
    clocks = dict(legacy_retention=p["legacy_retention"], blue_keep=p["blue_keep"])

    def result(state, **extra):
        out = dict(changed=False, migration=state, **extra)
        if p["phase"] is not None:
            out["group"] = group_of(state, p["phase"])
        return out

    if not p["wait_for"]:
        return result(read(js, p["legacy_stream"], p["groups"], **clocks))
    progress = []
    try:
        state = wait_for(js, p["legacy_stream"], p["groups"], p["phase"], p["wait_for"], p["timeout"],
                         progress=progress.append, stall=p["stall_timeout"], limit=p["max_behind"], **clocks)
    except JetStreamError as exc:
        if p["fail_on_timeout"] or exc.result.get("state") is None:
            raise
        return result(exc.result["state"], reached=False, reason=str(exc), progress=progress)
    waited = state.pop("waited_seconds")
    return result(state, reached=True, waited_seconds=waited, progress=progress)
