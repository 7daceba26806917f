# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Jinja filters over module_utils/journal.py, so playbooks name journal keys the way modules do, and the one
lookup of a group by its phase."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.athlete_ally.nats.plugins.module_utils import journal


def journal_entries(fields, phase):
    """``{field: value}`` -> ``{aa.migration.phase<N>.<field>: "value"}`` (metadata values are strings)."""
    if not isinstance(fields, dict):
        raise AnsibleFilterError("journal_entries expects a dict of journal fields, got %r" % (fields,))
    try:
        phase = int(phase)
    except (TypeError, ValueError):
        raise AnsibleFilterError("journal_entries needs the phase number, got %r" % (phase,))
    return journal.entries(fields, phase)


def journal_fields(metadata, phase):
    """A stream's metadata -> ``{field: value}`` of one phase's journal entries (the inverse of journal_entries)."""
    if not isinstance(metadata, dict):
        raise AnsibleFilterError("journal_fields expects a stream's metadata (a dict), got %r" % (metadata,))
    try:
        return journal.fields(metadata, phase)
    except (TypeError, ValueError):
        raise AnsibleFilterError("journal_fields needs the phase number, got %r" % (phase,))


def journal_rollback(phase):
    """The entries a rollback of ``phase`` writes on the legacy stream (its time and the phase given back, N-1), for
    the one rollback whose move has no second stream to record it (the new stream is gone)."""
    try:
        return {k: str(v) for k, v in journal.move_journal("rollback", phase)(None)[1].items()}
    except (TypeError, ValueError):
        raise AnsibleFilterError("journal_rollback needs the phase number, got %r" % (phase,))


def migration_group(groups, phase):
    """The group of ``migration.groups`` whose phase is ``phase``: an int, or the string ``-e migration_phase=N``
    gives; the one place the phase's type is reconciled, with one line naming the phases there are."""
    phases = [g.get("phase") for g in groups or [] if isinstance(g, dict)]
    try:
        wanted = int(str(phase).strip())
    except (TypeError, ValueError):
        wanted = None
    for group in groups or []:
        if isinstance(group, dict) and wanted is not None and str(group.get("phase")) == str(wanted):
            return group
    raise AnsibleFilterError("migration_phase=%s is not a phase of migration.groups (phases: %s): pass "
                             "-e migration_phase=N with one of them" % (phase, ", ".join(str(n) for n in phases)))


def shadow_sources(subjects, legacy_stream, start_seq):
    """The sources of a shadow stream: one per subject of the group, from ``legacy_stream`` at ``start_seq`` (its
    tail: no history is replayed). One source per subject because a source has one filter subject."""
    if isinstance(subjects, str) or not isinstance(subjects, (list, tuple)) or not subjects:
        raise AnsibleFilterError("shadow_sources expects the group's subjects as a non-empty list, got %r"
                                 % (subjects,))
    try:
        start_seq = int(start_seq)
    except (TypeError, ValueError):
        raise AnsibleFilterError("shadow_sources needs the start sequence (legacy last_seq + 1), got %r" % (start_seq,))
    if start_seq < 1:
        raise AnsibleFilterError("shadow_sources: the start sequence is 1 or more, got %d" % start_seq)
    return [dict(name=str(legacy_stream), filter_subject=str(s), opt_start_seq=start_seq) for s in subjects]


class FilterModule(object):
    def filters(self):
        return {"journal_entries": journal_entries, "journal_fields": journal_fields, "shadow_sources": shadow_sources,
                "migration_group": migration_group, "journal_rollback": journal_rollback}
