# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Jinja filters over module_utils/migration_state.py, so playbooks name journal keys the way modules do."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.athlete_ally.nats.plugins.module_utils.migration_state import journal_key


def journal_entries(fields, phase):
    """``{field: value}`` -> ``{aa.migration.phase<N>.<field>: "value"}`` (metadata values are strings)."""
    if not isinstance(fields, dict):
        raise AnsibleFilterError("journal_entries expects a dict of journal fields, got %r" % (fields,))
    try:
        phase = int(phase)
    except (TypeError, ValueError):
        raise AnsibleFilterError("journal_entries needs the phase number, got %r" % (phase,))
    return {journal_key(phase, str(k)): str(v) for k, v in fields.items()}


class FilterModule(object):
    def filters(self):
        return {"journal_entries": journal_entries}
