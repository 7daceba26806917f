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

from ansible_collections.athlete_ally.nats.plugins.module_utils.client import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.stream import find_overlaps


def _require(js, name):
    info = js.stream_info(name)
    if info is None:
        raise JetStreamError("stream %s does not exist at %s; create it before moving subjects to or from it"
                             % (name, js.where))
    return info


def _update(js, config):
    return js.request("STREAM.UPDATE.%s" % config["name"], config)


def _own_subjects(info):
    cfg = info["config"]
    subjects = list(cfg.get("subjects") or [])
    # A stream left without subjects (and without sources) is given its own name by the server.
    if subjects == [cfg["name"]] and not cfg.get("sources") and not cfg.get("mirror"):
        return []
    return subjects


def _sources_from(info, origin):
    return [s for s in info["config"].get("sources") or [] if s.get("name") == origin and not s.get("external")]


def plan(js, subjects, from_stream, to_stream, drop_sources):
    """Inspect both streams and decide what the move still has to do (nothing is written)."""
    src = _require(js, from_stream)
    dst = _require(js, to_stream)
    src_subjects, dst_subjects = _own_subjects(src), _own_subjects(dst)
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


def move(js, subjects, from_stream, to_stream):
    """Remove ``subjects`` from ``from_stream`` and add them to ``to_stream``; returns timings and seqs."""
    src = _require(js, from_stream)["config"]
    dst = _require(js, to_stream)["config"]
    dst_own = _own_subjects({"config": dst})
    src_new = dict(src, subjects=[s for s in _own_subjects({"config": src}) if s not in subjects])
    dst_new = dict(dst, subjects=dst_own + [s for s in subjects if s not in dst_own])
    started = time.monotonic()
    removed = _update(js, src_new)
    removed_at = time.monotonic()
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
        cutover_seq=removed.get("state", {}).get("last_seq"),
        target_seq=added.get("state", {}).get("last_seq"),
    )


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
    return _update(js, new)
