# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The service contract's names in SQL (docs/SERVICE_CONTRACT.md): a table or column from the inventory, checked and
quoted, for the few queries the role writes in YAML (validate's rows per window, post_migration's cleanup). The
logic lives in module_utils/service_contract.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.athlete_ally.nats.plugins.module_utils import service_contract


def sql_ident(name):
    """``name`` (``table`` or ``schema.table``) as a quoted SQL identifier; anything else is refused."""
    if not isinstance(name, str) or not service_contract.IDENT.match(name):
        raise AnsibleFilterError("sql_ident: %r is not a plain SQL identifier (letters, digits, _; optionally "
                                 "schema.name): fix the inventory's verify.row keys" % (name,))
    return service_contract.quote(name)


class FilterModule(object):
    def filters(self):
        return {"sql_ident": sql_ident}
