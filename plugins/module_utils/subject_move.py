# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Moving a subject group from one stream to another: the migration's cut-over.

Two streams may not hold overlapping subjects, so a move is two updates: remove from the
source stream, then add to the target. Between them no stream owns the subjects and
publishers see "no responders" (they retry). Both updates are sent back to back from one
process to keep that gap to milliseconds, and a failed second update puts the subjects back.
"""

from __future__ import annotations

import time

from ansible_collections.athlete_ally.nats.plugins.module_utils.config_diff import own_subjects
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import recheck_stream_config
from ansible_collections.athlete_ally.nats.plugins.module_utils.journal import missing_move_record, move_journal
from ansible_collections.athlete_ally.nats.plugins.module_utils.stream import find_overlaps


def _require(js, name):
    info = js.stream_info(name)
    if info is None:
        raise JetStreamError("stream %s does not exist at %s; create it before moving subjects to or from it"
                             % (name, js.where))
    return info


def _update(js, config, recheck=None):
    # A timed-out update (leader election) may still have been applied: re-read what it changes before resending.
    applied = {"subjects": config.get("subjects") or [], "metadata": config.get("metadata") or {}}
    return js.request("STREAM.UPDATE.%s" % config["name"], config,
                      recheck=recheck or recheck_stream_config(config["name"], applied))


def _sources_from(info, origin):
    return [s for s in info["config"].get("sources") or [] if s.get("name") == origin and not s.get("external")]


def plan(js, subjects, from_stream, to_stream, drop_sources):
    """Inspect both streams and decide what the move still has to do (nothing is written)."""
    src = _require(js, from_stream)
    dst = _require(js, to_stream)
    src_subjects, dst_subjects = own_subjects(src["config"]), own_subjects(dst["config"])
    in_src = [s for s in subjects if s in src_subjects]
    in_dst = [s for s in subjects if s in dst_subjects]
    stray = [s for s in src_subjects if s not in subjects and s in dst_subjects]
    if stray:
        raise JetStreamError("streams %s and %s both list %s; fix the topology by hand before a move"
                             % (from_stream, to_stream, stray))
    add = [s for s in subjects if s not in in_dst]
    clashes = find_overlaps(js, to_stream, add, ignore=(from_stream,))
    if clashes:
        name, hits = min(clashes.items())
        raise JetStreamError("cannot move %s to %s: stream %s also listens on %s; nothing was changed"
                             % (subjects, to_stream, name, ", ".join("%s ~ %s" % h for h in hits)))
    pending_sources = _sources_from(dst, from_stream) if drop_sources else []
    return dict(src=src, dst=dst, remove=in_src, add=add, drop_sources=pending_sources)


def with_journal(cfg, entries):
    """``cfg`` with journal entries merged into its metadata (the server keeps metadata as strings)."""
    if not entries:
        return cfg
    meta = dict(cfg.get("metadata") or {})
    meta.update({k: str(v) for k, v in entries.items()})
    return dict(cfg, metadata=meta)


def move(js, subjects, from_stream, to_stream, journal=None):
    """Remove ``subjects`` from ``from_stream`` and add them to ``to_stream``; returns timings and seqs.

    ``journal(cutover_seq) -> (entries for from_stream, entries for to_stream)`` puts the record of the move into
    the metadata of the same two updates, so the record exists exactly when the move happened.
    """
    src = _require(js, from_stream)["config"]
    dst = _require(js, to_stream)["config"]
    dst_own = own_subjects(dst)
    src_journal = journal(None)[0] if journal else {}
    src_new = with_journal(dict(src, subjects=[s for s in own_subjects(src) if s not in subjects]), src_journal)
    started = time.monotonic()
    removed = _update(js, src_new)
    removed_at = time.monotonic()
    cutover_seq = removed.get("state", {}).get("last_seq")
    dst_journal = journal(cutover_seq)[1] if journal else {}
    dst_new = with_journal(dict(dst, subjects=dst_own + [s for s in subjects if s not in dst_own]), dst_journal)
    try:
        added = _update(js, dst_new)
    except JetStreamError as exc:
        try:
            _update(js, src)
            restored = "the subjects were put back on %s" % from_stream
        except JetStreamError as exc2:
            restored = ("putting them back on %s ALSO failed (%s): no stream owns %s now; run rollback"
                        % (from_stream, exc2, subjects))
        raise JetStreamError("adding %s to %s failed (%s); %s" % (subjects, to_stream, exc, restored))
    added_at = time.monotonic()
    return dict(
        gap_ms=round((added_at - removed_at) * 1000.0, 3),
        elapsed_ms=round((added_at - started) * 1000.0, 3),
        cutover_seq=cutover_seq,
        target_seq=added.get("state", {}).get("last_seq"),
    )


def record(js, stream, entries):
    """Write journal entries a finished move lacks into ``stream``'s metadata (one update)."""
    return _update(js, with_journal(_require(js, stream)["config"], entries))


def wait_caught_up(js, to_stream, from_stream, cutover_seq, timeout, poll=0.25, settle=1.0):
    """Until every source of ``to_stream`` reading ``from_stream`` shows no lag for ``settle`` seconds.

    Source lag is refreshed by the server as the source's internal consumer reports, so a single
    zero right after the cut-over may be stale; zero over a settle window is not.
    """
    deadline = time.monotonic() + timeout
    zero_since = None
    last = None
    while True:
        info = _require(js, to_stream)
        last = info.get("sources") or []
        mine = [s for s in last if s.get("name") == from_stream]
        if all(not s.get("lag") and not s.get("error") for s in mine):
            zero_since = zero_since or time.monotonic()
            if time.monotonic() - zero_since >= settle:
                return mine
        else:
            zero_since = None
        if time.monotonic() > deadline:
            raise JetStreamError(
                "the sources of %s from %s still lag after %ss (cut-over seq %s); raise catchup_timeout, or check "
                "the stream leaders; nothing was removed" % (to_stream, from_stream, timeout, cutover_seq),
                sources=last)
        time.sleep(poll)


def drop_sources(js, to_stream, from_stream):
    cfg = _require(js, to_stream)["config"]
    kept = [s for s in cfg.get("sources") or [] if s.get("name") != from_stream or s.get("external")]
    new = dict(cfg, sources=kept)
    if not kept:
        new.pop("sources")

    def dropped(js_):
        info = js_.stream_info(to_stream)
        return info if info is not None and not _sources_from(info, from_stream) else None
    return _update(js, new, recheck=dropped)


def run(module, js):
    """jetstream_subject_move: plan the move, show it (diff, check mode), make it with its journal records (or write
    the records a move made without them), then wait for the sources to catch up and drop them."""
    p = module.params
    missing = [name for name in (p["from_stream"], p["to_stream"]) if js.stream_info(name) is None]
    if missing and module.check_mode:
        # A rehearsal of a phase that would first create the stream: report the move it would make.
        return dict(changed=True, moved=[], sources_dropped=[],
                    msg="would move %s once %s exists" % (p["subjects"], " and ".join(missing)))
    todo = plan(js, p["subjects"], p["from_stream"], p["to_stream"], p["drop_sources"])
    result = dict(changed=bool(todo["remove"] or todo["add"] or todo["drop_sources"]), moved=[],
                  sources_dropped=todo["drop_sources"])
    if module._diff:
        result["diff"] = dict(
            before={p["from_stream"]: todo["src"]["config"].get("subjects"),
                    p["to_stream"]: todo["dst"]["config"].get("subjects")},
            after={p["from_stream"]: [s for s in todo["src"]["config"].get("subjects") or []
                                      if s not in p["subjects"]],
                   p["to_stream"]: sorted(set(todo["dst"]["config"].get("subjects") or []) | set(p["subjects"]))})
    records = move_journal(p["record"], p["phase"]) if p["record"] else None
    missing = {}
    if records and not (todo["remove"] or todo["add"]):
        missing = missing_move_record(p["record"], p["phase"], todo["src"], todo["dst"])
    result["recorded"] = {}
    if missing:
        result["changed"] = True
        module.warn("the %s of phase %s is not in the journal of %s; derived from the streams and %s: %s"
                    % (p["record"], p["phase"], p["to_stream"], "would write" if module.check_mode else "written",
                       missing))
    if module.check_mode or not result["changed"]:
        return result
    if todo["remove"] or todo["add"]:
        result.update(move(js, p["subjects"], p["from_stream"], p["to_stream"], records))
        result["moved"] = list(p["subjects"])
        if records:
            src_entries, dst_entries = records(result["cutover_seq"])
            result["recorded"] = {p["from_stream"]: src_entries, p["to_stream"]: dst_entries}
    elif missing:
        record(js, p["to_stream"], missing)
        result["recorded"] = {p["to_stream"]: missing}
    if todo["drop_sources"]:
        wait_caught_up(js, p["to_stream"], p["from_stream"], result.get("cutover_seq"), p["catchup_timeout"])
        drop_sources(js, p["to_stream"], p["from_stream"])
    return result
