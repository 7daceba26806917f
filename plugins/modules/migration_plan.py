#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_plan
short_description: Check a stream-split migration plan as a whole, alone and against the live cluster
version_added: "0.3.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - Checks the inventory's C(migration) before anything is written, and fails with one line per mistake, each
    naming the inventory key (for example C(migration.groups[1].subjects)) and what to do.
  - "The plan alone: stream and consumer names, subjects (wildcard-aware: V(vendor.>) and V(vendor.oura.*)
    overlap), every legacy subject in exactly one group and every group subject literally one of the legacy
    stream's, phases, consumer filters inside their group, the service modes naming the streams, every duration,
    size and threshold readable, the backup and go/no-go settings, the service contract's keys, and (when
    C(migration.require_staging_validation) is set, or C(migration.staging_validated) given) the staging run's
    topology digest equal to this plan's (RV(topology_digest))."
  - With O(live), also against the cluster's streams (C($JS.API.STREAM.LIST), paged) where a partly done
    migration may have left them, each group's subjects held by the legacy stream or by the group's own stream
    (or in a move interrupted between its two updates), group stream names not taken by unrelated streams,
    no unrelated stream holding a subject of a group or of the DLQ, and the legacy stream present while a
    group still needs it.
  - Never changes anything; RV(ignore:changed) is always V(false).
  - The logic is in C(plugins/module_utils/plan.py); RV(digest) is what the go/no-go gate records.
options:
  plan:
    description: The migration plan, the inventory's C(migration) mapping.
    type: dict
    required: true
  live:
    description: Also check the plan against the cluster's streams. V(false) checks the plan alone, without connecting.
    type: bool
    default: true
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only; runs the same in check mode.
  diff_mode:
    support: N/A
    details: Reads only; there is nothing to diff.
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: The plan, checked as a whole against the cluster
  athlete_ally.nats.migration_plan:
    plan: "{{ migration }}"
  register: plan_check

- name: The plan alone (no cluster needed)
  athlete_ally.nats.migration_plan:
    plan: "{{ migration }}"
    live: false
"""

RETURN = r"""
digest:
  description: sha256 (hex) of the plan's canonical JSON; the same plan gives the same digest whatever its key order.
  returned: always
  type: str
topology_digest:
  description:
    - sha256 (hex) of what staging and production must share (legacy stream and subjects, each group's phase, name,
      stream, subjects and consumers' names and filters, the DLQ's stream and subjects, the modes), nothing
      environment-specific (endpoints, durations, thresholds, backup, soak lengths).
    - A staging run's digest, set in production as C(migration.staging_validated.topology_digest), ties the
      production run to it when C(migration.require_staging_validation) is V(true).
  returned: always
  type: str
errors:
  description: One line per mistake (empty when the plan passed); on failure C(msg) is these lines joined.
  returned: always
  type: list
  elements: str
groups:
  description:
    - Per group C(phase), C(name), C(stream), C(subjects), C(consumers) (names) and, with O(live), C(placement)
      (subject to V(legacy), V(own) or V(neither)).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import plan_check
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        plan=dict(type="dict", required=True),
        live=dict(type="bool", default=True),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True)
    plan_check.run(module)


if __name__ == "__main__":
    main()
