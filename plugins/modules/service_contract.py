#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: service_contract
short_description: Prove a deployment meets the service contract the migration verifies it by
version_added: "0.4.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - The contract is inventory data (C(migration.service_contract) and each group's C(verify); see
    docs/SERVICE_CONTRACT.md). This checks its keys, then the deployment against it, and returns every finding as
    one line in RV(errors); the playbook refuses with them (playbooks/contract_check.yml).
  - The database, as the migration's user - each verification table (C(verify.row.table)) with its key, match
    and time columns (information_schema), readable by that user.
  - The front door - per group with a C(verify.path), one probe event (id
    C(<verification_id_prefix>contract-probe-p<phase>), fixed, so probing again adds nothing) whose answer must
    carry the contract's reply fields and, with C(verify.row), whose row must appear equal to the event (bounded
    by O(stall_timeout)).
  - The metrics - each group's C(verify.metric) family at O(metrics_url), with its labels and the contract's
    C(stream_label) (polled, bounded by O(stall_timeout)).
attributes:
  check_mode:
    support: full
    details: Reads the database and the metrics; sends no probe event (and says so in RV(probes)).
  diff_mode:
    support: none
    details: Nothing to compare.
  platform:
    platforms: posix
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  migration:
    description: The inventory's C(migration) (its C(service_contract) and C(groups) are read).
    type: dict
    required: true
  ingest_url:
    description: Base URL of the front door (C(migration_endpoints.ingest)); unset, no probe event is sent.
    type: str
  metrics_url:
    description: The /metrics URL of the deployment in use.
    type: str
  probe:
    description: Send the probe events (ignored in check mode, where none is sent).
    type: bool
    default: true
  stall_timeout:
    description: Longest wait for a probe's row and for the metrics (duration such as V(60s), or seconds).
    type: raw
    default: 60s
  http_timeout:
    description: Seconds one HTTP request may take.
    type: int
    default: 30
  db_host:
    description: Database host.
    type: str
    required: true
  db_port:
    description: Database port.
    type: int
    default: 5432
  db_user:
    description: The migration's database user (the checks see what it sees).
    type: str
    required: true
  db_password:
    description: Its password (else libpq's E(PGPASSWORD) or C(~/.pgpass)). Never logged.
    type: str
  db_name:
    description: Database name.
    type: str
    required: true
requirements:
  - psycopg2
seealso:
  - module: athlete_ally.nats.migration_verify
"""

EXAMPLES = r"""
- name: The services meet the contract
  athlete_ally.nats.service_contract:
    migration: "{{ migration }}"
    ingest_url: "{{ migration_endpoints.ingest }}"
    metrics_url: "{{ migration_endpoints.metrics }}"
    db_host: "{{ migration_endpoints.database.host }}"
    db_user: "{{ migration_endpoints.database.user }}"
    db_name: "{{ migration_endpoints.database.db }}"
  register: contract
- name: Refuse in one line
  ansible.builtin.assert:
    that: contract.errors | length == 0
    fail_msg: "{{ contract.errors | join('; ') }}"
"""

RETURN = r"""
errors:
  description: One line per finding (a contract key, a table or column, a reply field, a row, a metric); empty when met.
  returned: always
  type: list
  elements: str
tables:
  description: Per verification table, the columns the migration's user sees.
  returned: always
  type: dict
probes:
  description: Per phase, the probe event's id, URL, HTTP status and answer; a sentence when none was sent.
  returned: always
  type: raw
unproven:
  description: Without a probe (check mode), the metric families that had no samples yet - not proven, not refused.
  returned: always
  type: list
  elements: str
metrics_checked:
  description: The metric families checked.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.athlete_ally.nats.plugins.module_utils import contract_probe, durations


def argument_spec():
    """This module's options: it reads the service and its database, never NATS, so no connection options."""
    return dict(
        migration=dict(type="dict", required=True),
        ingest_url=dict(type="str"),
        metrics_url=dict(type="str"),
        probe=dict(type="bool", default=True),
        stall_timeout=durations.duration_option(default="60s"),
        http_timeout=dict(type="int", default=30),
        db_host=dict(type="str", required=True),
        db_port=dict(type="int", default=5432),
        db_user=dict(type="str", required=True),
        db_password=dict(type="str", no_log=True),
        db_name=dict(type="str", required=True),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    module.exit_json(**contract_probe.run(module))


if __name__ == "__main__":
    main()
