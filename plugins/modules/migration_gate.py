#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_gate
short_description: Go/no-go for a migration run - a recent passed preflight of the same plan, one run at a time
version_added: "0.3.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - Keeps the migration's control records in a NATS key-value bucket (O(bucket), see C(docs/JOURNAL.md)).
  - V(preflight_passed) records that preflight passed for the plan O(digest).
  - V(enter) refuses in one line unless a preflight of the same plan passed within O(valid_for) (with
    O(skip_preflight) it proceeds with a warning and records the skip; in check mode it only warns), then takes the
    run lease. The lease belongs to the run's C(ansible-playbook) process; a detached heartbeat renews it every
    O(heartbeat_interval) while that process lives. A second run refuses naming the holder; a lease whose holder's
    process is gone from this controller is taken over at once, one held from elsewhere once its heartbeat is older
    than O(lease_lapse).
  - V(release) gives the lease back when this run holds it.
  - "Always reports C(changed=false): the records and the lease are the run's bookkeeping, not the migration's state,
    so a run that changes nothing else reports C(changed=0)."
options:
  state:
    description: What to do.
    type: str
    choices: [enter, release, preflight_passed]
    default: enter
  bucket:
    description: The control bucket (a NATS KV bucket, created on the first write).
    type: str
    required: true
  replicas:
    description: Replicas of the bucket when it is created.
    type: int
    default: 3
  digest:
    description: The plan's digest (C(athlete_ally.nats.migration_plan) returns it). Required for V(enter) and V(preflight_passed).
    type: str
  valid_for:
    description: How long a passed preflight allows runs (duration such as V(24h)).
    type: raw
    default: 24h
  require_preflight:
    description: Whether V(enter) needs a passed preflight (false for rollbacks and phase 3, which only take the lease).
    type: bool
    default: true
  skip_preflight:
    description: Proceed without a passed preflight, loudly, recording it in the journal.
    type: bool
    default: false
  preflight_command:
    description: The command the refusal names.
    type: str
    default: ansible-playbook playbooks/preflight.yml
  label:
    description: Extra words naming the run in the lease, e.g. the AWX job id.
    type: str
  lease_lapse:
    description: A lease held from another controller lapses when its heartbeat is older than this.
    type: raw
    default: 30
  heartbeat_interval:
    description: How often the heartbeat renews the lease.
    type: raw
    default: 10
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads and warns; never writes a record or takes the lease.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Go/no-go
  athlete_ally.nats.migration_gate:
    bucket: migration_control
    digest: "{{ plan.digest }}"
    valid_for: 24h
    skip_preflight: "{{ migration_skip_preflight | default(false) | bool }}"

- name: Give the lease back
  athlete_ally.nats.migration_gate:
    bucket: migration_control
    state: release
"""

RETURN = r"""
preflight:
  description: The last passed preflight record (C(digest), C(passed_at), C(by)), or null.
  returned: with state=enter
  type: dict
preflight_ok:
  description: Whether that record allows this run.
  returned: with state=enter
  type: bool
lease:
  description: The lease this run holds (C(run_id), C(host), C(pid), C(since), C(heartbeat), C(what), C(label)).
  returned: with state=enter, not in check mode
  type: dict
lease_verdict:
  description: V(acquire), V(renew) or V(take_over).
  returned: with state=enter, not in check mode
  type: str
record:
  description: The preflight record written.
  returned: with state=preflight_passed
  type: dict
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, gate
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        state=dict(type="str", choices=["enter", "release", "preflight_passed"], default="enter"),
        bucket=dict(type="str", required=True),
        replicas=dict(type="int", default=3),
        digest=dict(type="str"),
        valid_for=durations.duration_option(default="24h"),
        require_preflight=dict(type="bool", default=True),
        skip_preflight=dict(type="bool", default=False),
        preflight_command=dict(type="str", default="ansible-playbook playbooks/preflight.yml"),
        label=dict(type="str"),
        lease_lapse=durations.duration_option(default=30),
        heartbeat_interval=durations.duration_option(default=10),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True,
                          required_if=[("state", "preflight_passed", ["digest"])])
    run_module(module, gate.run, seconds=("valid_for", "lease_lapse", "heartbeat_interval"), check=gate.check_params)


if __name__ == "__main__":
    main()
