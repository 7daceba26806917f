#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: jetstream_subject_move
short_description: Move a group of subjects from one JetStream stream to another (the cut-over)
version_added: "0.1.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - Removes O(subjects) from O(from_stream) and at once adds them to O(to_stream), two updates sent back to
    back from one process so the window in which no stream owns the subjects lasts milliseconds.
    Publishers must retry across that window (the server answers "no responders").
  - If the second update fails the subjects are put back on O(from_stream) and the task fails.
  - With O(drop_sources=true), afterwards waits until the sources of O(to_stream) that read O(from_stream)
    have caught up, then removes them (the "shadow" sourcing used before the cut-over).
  - Idempotent; converges from a half-done move ("subjects removed from the legacy stream but not yet added").
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports the move it would make, also onto a stream the same run would create first; writes nothing.
  diff_mode:
    support: full
    details: The subjects of both streams before and after the move.
  platform:
    platforms: posix
options:
  subjects:
    description: The subject group to move, exactly as the streams list them.
    type: list
    elements: str
    required: true
  from_stream:
    description: Stream that holds the subjects now.
    type: str
    required: true
  to_stream:
    description: Stream that takes them over.
    type: str
    required: true
  drop_sources:
    description: After the move, remove the sources of O(to_stream) that read O(from_stream) once they caught up.
    type: bool
    default: true
  catchup_timeout:
    description:
      - How long to wait for those sources to catch up (duration such as V(2m), or seconds); on timeout nothing
        is removed and the task fails.
    type: raw
    default: 60
  record:
    description:
      - Write the migration journal (C(docs/JOURNAL.md)) for group O(phase) into the metadata of the same two
        updates that move the subjects, so the record exists exactly when the move does.
      - V(cutover) records C(aa.migration.phase), C(phaseN.cutover_at) on O(from_stream) and C(phaseN.cutover_seq),
        C(phaseN.cutover_at) on O(to_stream); V(rollback) records C(phaseN.rolled_back_at) on both and sets
        C(aa.migration.phase) to N-1 on O(to_stream).
      - When the subjects are already where they belong but the record is missing (an older run), the record is
        derived from the streams, written in one update, and a warning says so.
    type: str
    choices: [cutover, rollback]
  phase:
    description: The phase (subject group number) O(record) writes; required with O(record).
    type: int
"""

EXAMPLES = r"""
- name: Cut vendor traffic over to AA_VENDOR_HOT
  athlete_ally.nats.jetstream_subject_move:
    subjects: ["vendor.>"]
    from_stream: ATHLETE_ALLY_EVENTS
    to_stream: AA_VENDOR_HOT
  register: cutover

- name: Roll back (subjects return to the legacy stream)
  athlete_ally.nats.jetstream_subject_move:
    subjects: ["vendor.>"]
    from_stream: AA_VENDOR_HOT
    to_stream: ATHLETE_ALLY_EVENTS
    drop_sources: false
"""

RETURN = r"""
moved:
  description: Subjects that were moved by this run (empty when they already were on O(to_stream)).
  returned: always
  type: list
  elements: str
gap_ms:
  description: Milliseconds between the removal and the addition replies (no stream owned the subjects).
  returned: when subjects were moved
  type: float
cutover_seq:
  description: Last sequence of O(from_stream) right after the removal; nothing of the group lands there after it.
  returned: when subjects were moved
  type: int
recorded:
  description: Journal entries written by this run, by stream.
  returned: always
  type: dict
target_seq:
  description: Last sequence of O(to_stream) when it took the subjects over.
  returned: when subjects were moved
  type: int
sources_dropped:
  description: The sources removed from O(to_stream).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, subject_move
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        subjects=dict(type="list", elements="str", required=True),
        from_stream=dict(type="str", required=True),
        to_stream=dict(type="str", required=True),
        drop_sources=dict(type="bool", default=True),
        catchup_timeout=durations.duration_option(default=60),
        record=dict(type="str", choices=["cutover", "rollback"]),
        phase=dict(type="int"),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True, required_by=dict(record=["phase"]))
    run_module(module, subject_move.run, seconds=("catchup_timeout",))


if __name__ == "__main__":
    main()
