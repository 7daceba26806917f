# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The migration journal's format, in one place (docs/JOURNAL.md): the keys it writes into stream metadata, how
one phase's fields are read back, the records a subject move writes with itself, and the ones it derives when a
move happened without them.

Stream metadata maps strings to strings: every value is written as a string, times are Unix seconds (UTC), and a
value that does not read as a number counts as absent (0). No import from the rest of the collection, so tools
outside Ansible's collection loader (lab/exporter.py) can load this file by path.
"""

from __future__ import annotations

import time

PREFIX = "aa.migration."
# Which phase the legacy stream has given up to (set by the cut-over and rollback updates).
PHASE_KEY = PREFIX + "phase"


def now_epoch():
    return int(time.time())


def journal_key(phase, field):
    """``aa.migration.phase<N>.<field>``."""
    return "%sphase%d.%s" % (PREFIX, int(phase), field)


def parse_key(key):
    """``(phase, field)`` of a journal key of one phase, or None for any other key."""
    head = PREFIX + "phase"
    if not isinstance(key, str) or not key.startswith(head):
        return None
    number, dot, field = key[len(head):].partition(".")
    if not (dot and field and number.isdigit()):
        return None
    return int(number), field


def metadata_of(info):
    """The metadata of a stream info reply (``{}`` when there is no stream or no metadata)."""
    return ((info or {}).get("config") or {}).get("metadata") or {}


def fields(metadata, phase):
    """``{field: value}`` of one phase's entries in a stream's metadata."""
    phase = int(phase)
    out = {}
    for key, value in (metadata or {}).items():
        parsed = parse_key(key)
        if parsed and parsed[0] == phase:
            out[parsed[1]] = value
    return out


def journal_of(info, phase):
    """``{field: value}`` of one phase's entries in a stream info (``{}`` when there is none)."""
    return fields(metadata_of(info), phase)


def entries(values, phase):
    """``{field: value}`` -> ``{aa.migration.phase<N>.<field>: "value"}``: what a metadata update writes."""
    return {journal_key(phase, str(k)): str(v) for k, v in values.items()}


def number(value):
    """A journal value as an int (0 when absent or not a number: never a time that starts a clock early)."""
    try:
        return int(float(value or 0))
    except (TypeError, ValueError):
        return 0


def journal_time(entry, field):
    """Unix seconds of ``field`` in one phase's fields (0 when absent)."""
    return number((entry or {}).get(field))


def times(metadata):
    """``[(phase, field, seconds)]`` of every time (``*_at``) the journal holds in a stream's metadata."""
    out = []
    for key, value in (metadata or {}).items():
        parsed = parse_key(key)
        if parsed and parsed[1].endswith("_at") and number(value):
            out.append((parsed[0], parsed[1], number(value)))
    return sorted(out)


def legacy_phase(metadata):
    """The phase the legacy stream records as given up to (0 when none)."""
    return number((metadata or {}).get(PHASE_KEY))


def move_journal(record, phase, now=None):
    """``journal(cutover_seq) -> (entries for the stream giving the subjects up, entries for the one taking them)``
    for jetstream_subject_move: the record goes into the same two updates as the move it records."""
    at = now_epoch() if now is None else int(now)
    phase = int(phase)

    def cutover(cutover_seq):
        dst = {journal_key(phase, "cutover_at"): at}
        if cutover_seq is not None:
            dst[journal_key(phase, "cutover_seq")] = cutover_seq
        return {PHASE_KEY: phase, journal_key(phase, "cutover_at"): at}, dst

    def rollback(_cutover_seq):
        return ({journal_key(phase, "rolled_back_at"): at},
                {journal_key(phase, "rolled_back_at"): at, PHASE_KEY: phase - 1})

    return cutover if record == "cutover" else rollback


def missing_move_record(record, phase, from_info, to_info, now=None):
    """Entries the stream taking the subjects lacks when the move itself is already done (an older run, or a
    run killed after a move that did not record it): derived from the streams, to be written with a warning."""
    at = now_epoch() if now is None else int(now)
    phase = int(phase)
    if record == "cutover":
        have = journal_of(to_info, phase)
        out = {}
        if not have.get("cutover_seq"):
            # The legacy stream's last seq now bounds the cut-over seq from above.
            out[journal_key(phase, "cutover_seq")] = str(((from_info or {}).get("state") or {}).get("last_seq", 0))
        if not have.get("cutover_at"):
            # Now is the latest the cut-over can have been: the retention clock never starts too early.
            out[journal_key(phase, "cutover_at")] = str(at)
        return out
    back = journal_time(journal_of(to_info, phase), "rolled_back_at")
    if back and back >= journal_time(journal_of(from_info, phase), "cutover_at"):
        return {}
    return {journal_key(phase, "rolled_back_at"): str(at), PHASE_KEY: str(phase - 1)}
