#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: jetstream_restore_point
short_description: Keep a stream's configuration in other streams' metadata, and recreate the stream from it
version_added: "0.3.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - With O(state=recorded), reads O(stream) and its consumers (C($JS.API.STREAM.INFO), C(CONSUMER.LIST)) and
    writes their configurations and the stream's last sequence, as one JSON metadata value O(key), to every
    stream of O(journal_streams) that exists and does not hold the same record already. Run it before deleting
    O(stream); a run killed between the record and the delete re-runs without writing the record again.
  - With O(state=restored), when O(stream) does not exist, creates it from the first record found in
    O(journal_streams), continuing its sequence (C(first_seq), nats-server 2.10 and later), with only the
    recorded subjects no other stream owns or overlaps now (none at all makes the server listen on the stream's
    own name); then creates each recorded consumer O(stream) lacks. A stream that exists is left as it is.
  - Fails in one line, changing nothing, when no journal stream exists to record into, when the record would
    exceed 32 KiB of metadata, or when the stream is missing and no record of it is found.
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Says what would be recorded or created; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  stream:
    description: The stream recorded (before its delete) or restored.
    type: str
    required: true
  journal_streams:
    description: Streams whose metadata keeps the record (they must outlive O(stream)); read in this order.
    type: list
    elements: str
    required: true
  key:
    description:
      - The metadata key holding the record; by default the migration journal's C(aa.migration.legacy_restore_point).
    type: str
  state:
    description: V(recorded) writes the record; V(restored) recreates the stream and its consumers from it.
    type: str
    choices: [recorded, restored]
    required: true
"""

EXAMPLES = r"""
- name: Keep the legacy stream's configuration before deleting it
  athlete_ally.nats.jetstream_restore_point:
    stream: ORDERS
    journal_streams: [ORDERS_EU, ORDERS_US]
    state: recorded

- name: Recreate it (and its consumers) for a rollback
  athlete_ally.nats.jetstream_restore_point:
    stream: ORDERS
    journal_streams: [ORDERS_EU, ORDERS_US]
    state: restored
"""

RETURN = r"""
msg:
  description: One line saying what was recorded or restored.
  returned: always
  type: str
recorded:
  description: The journal streams the record was written to (empty when all held it already).
  returned: with O(state=recorded)
  type: list
  elements: str
record:
  description: The record (C(config), C(consumers), C(last_seq)).
  returned: with O(state=recorded), when O(stream) exists
  type: dict
created_stream:
  description: Whether O(stream) was created.
  returned: with O(state=restored)
  type: bool
created_consumers:
  description: Names of the consumers created.
  returned: with O(state=restored)
  type: list
  elements: str
subjects_left_out:
  description: Recorded subjects not given to the recreated stream, each with the stream and subject that own it.
  returned: with O(state=restored)
  type: dict
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import legacy_restore
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        stream=dict(type="str", required=True),
        journal_streams=dict(type="list", elements="str", required=True),
        key=dict(type="str", no_log=False),
        state=dict(type="str", choices=["recorded", "restored"], required=True),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True)
    run_module(module, legacy_restore.run)


if __name__ == "__main__":
    main()
