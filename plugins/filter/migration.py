# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Jinja filters over module_utils/migration_state.py, so playbooks name journal keys the way modules do."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.athlete_ally.nats.plugins.module_utils.migration_state import journal_key, journal_of


def journal_entries(fields, phase):
    """``{field: value}`` -> ``{aa.migration.phase<N>.<field>: "value"}`` (metadata values are strings)."""
    if not isinstance(fields, dict):
        raise AnsibleFilterError("journal_entries expects a dict of journal fields, got %r" % (fields,))
    try:
        phase = int(phase)
    except (TypeError, ValueError):
        raise AnsibleFilterError("journal_entries needs the phase number, got %r" % (phase,))
    return {journal_key(phase, str(k)): str(v) for k, v in fields.items()}


def journal_fields(metadata, phase):
    """A stream's metadata -> ``{field: value}`` of one phase's journal entries (the inverse of journal_entries)."""
    if not isinstance(metadata, dict):
        raise AnsibleFilterError("journal_fields expects a stream's metadata (a dict), got %r" % (metadata,))
    return journal_of({"config": {"metadata": metadata}}, int(phase))


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
        return {"journal_entries": journal_entries, "journal_fields": journal_fields, "shadow_sources": shadow_sources}
