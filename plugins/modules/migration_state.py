#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_state
short_description: Where a stream-split migration stands, read from the cluster in one call
version_added: "0.2.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - Reads the legacy stream and each subject group's new stream, their consumers and the migration journal
    (stream metadata C(aa.migration.*), see C(docs/JOURNAL.md)), and derives the step each group is at.
  - "Steps, in order: V(not_started) (or V(rolled_back)), V(shadow_ready) (new stream sources the group, its
    consumers exist), V(bound) (the service reads the new consumers), V(in_limbo) (some subjects on neither
    stream: a cut-over or a rollback was interrupted between its two updates), V(cut_over) (subjects on the new
    stream, shadow sources still there), V(caught_up), V(verified), V(complete)."
  - A consumer has a reader when it has waiting pull requests, a bound push subscriber, or an ack within the
    last 5 seconds. The state of the cluster decides; no log line is read.
  - With O(wait_for), polls until the condition holds for group O(phase) (every group without O(phase)), and on
    timeout fails with the last state seen.
  - Each group carries its plan, derived from the steps (C(module_utils/migration_state.py) C(STEPS)) and its
    journal, that is what a run of its phase still does, and the clocks of Day 14 (legacy stream deletable
    O(legacy_retention) after the last cut-over) and of Step 2.10 (blue removable O(blue_keep) after it was scaled
    down). Playbooks branch on these fields; they never list steps or compute a clock.
options:
  legacy_stream:
    description: The stream the groups are migrated off.
    type: str
    required: true
  groups:
    description:
      - The subject groups, as in the inventory's C(migration.groups); each needs C(phase), C(stream),
        C(subjects) and C(consumers) (names, or dicts with C(name)). Other keys are ignored.
    type: list
    elements: dict
    required: true
  phase:
    description:
      - The group this run is about; RV(group) returns its state. O(wait_for) watches it (every group without it).
    type: int
  legacy_retention:
    description:
      - How long the legacy stream is kept after the last cut-over (the inventory's
        C(migration.legacy.retention_seconds)); a duration such as V(14d), or seconds. Without it the Day-14 clock
        is not computed.
    type: raw
  blue_keep:
    description:
      - How long blue is kept after phase 2 scaled it to 0 (the inventory's C(migration.blue_green.keep_seconds));
        a duration or seconds. Without it blue's clock is not computed.
    type: raw
  wait_for:
    description:
      - V(bound), every consumer of the group has a reader on the new stream; V(bound_legacy), on the legacy
        stream; V(drained), nothing pending or unacknowledged on the new stream's consumers; V(recovered), every
        legacy consumer has a reader and their backlog is at most O(max_behind) (after a rollback).
    type: str
    choices: [bound, bound_legacy, drained, recovered]
  max_behind:
    description: The backlog O(wait_for=recovered) accepts.
    type: int
    default: 0
  timeout:
    description: How long O(wait_for) waits (duration such as V(5m), or seconds).
    type: raw
    default: 60
  stall_timeout:
    description:
      - With O(wait_for=drained), stop waiting once the backlog has not shrunk for this long (nobody processes it).
    type: raw
  fail_on_timeout:
    description:
      - When false, a O(wait_for) that times out or stalls does not fail the task; it returns RV(reached=false),
        RV(reason) and the last state seen, for the play to decide (a rollback that defers instead of failing).
    type: bool
    default: true
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only; O(wait_for) also waits in check mode.
  diff_mode:
    support: N/A
    details: Reads only; there is nothing to diff.
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Where the migration stands
  athlete_ally.nats.migration_state:
    legacy_stream: ATHLETE_ALLY_EVENTS
    groups: "{{ migration.groups }}"
  register: state

- name: Phase 2 is past its cut-over
  ansible.builtin.assert:
    that: state.migration.groups['2'].step in ['cut_over', 'caught_up', 'verified', 'complete']

- name: Wait until the service reads the new consumers
  athlete_ally.nats.migration_state:
    legacy_stream: ATHLETE_ALLY_EVENTS
    groups: "{{ migration.groups }}"
    phase: 2
    wait_for: bound
    timeout: 120

- name: Phase 3 may delete the legacy stream once its 14 days ran out
  athlete_ally.nats.migration_state:
    legacy_stream: ATHLETE_ALLY_EVENTS
    groups: "{{ migration.groups }}"
    legacy_retention: 14d
  register: state

- name: Delete it only then
  ansible.builtin.debug:
    msg: "{{ 'delete now' if state.migration.legacy_delete.allowed
             else 'wait ' ~ state.migration.legacy_delete.seconds_left ~ ' s' }}"
"""

RETURN = r"""
migration:
  description: The legacy stream and each group, keyed by phase as a string.
  returned: always
  type: dict
  contains:
    legacy:
      description: Name, C(exists), its own subjects, C(last_seq), C(messages) and the journal's phase.
      type: dict
    groups:
      description:
        - Per group C(step), C(placement) (subject to V(legacy), V(new) or V(neither)), C(on_legacy),
          C(on_new), C(in_limbo), C(sources) (C(filter_subject), C(opt_start_seq), C(lag)), C(consumers)
          (name to C(legacy)/C(new) state with C(num_pending), C(num_ack_pending), C(behind), C(reader)),
          C(behind), C(journal), C(legacy_journal), C(journal_missing) (records a finished cut-over lacks,
          with derived values) and C(plan).
        - "C(plan): C(next_step), C(steps_left), C(cutover_ahead) (shadow, bind and the pre-cut-over verification still
          to do), C(moved) (subjects on the new stream), C(verify_ahead), C(complete), C(cutover_at), C(cutover_seq),
          C(delete_allowed_at), C(delete_allowed), C(delete_seconds_left), C(blue_scaled_down_at), C(blue_remove_at),
          C(blue_removable), C(blue_seconds_left), C(rollback_left) (C(subjects) to move back, C(sources) to stop,
          C(consumers) with a backlog on the new stream, C(stream) to delete)."
      type: dict
    first_phase:
      description: The lowest phase of the groups.
      type: int
    last_phase:
      description: The highest phase of the groups.
      type: int
    last:
      description: The group with the highest phase (as in RV(migration.groups)).
      type: dict
    unmoved_subjects:
      description: The subjects of the groups whose cut-over is still ahead (all the legacy stream may still own).
      type: list
    all_complete:
      description: Whether every group is complete.
      type: bool
    legacy_delete:
      description:
        - "Phase 3's decision: C(ready) (every group cut over with its record), C(not_ready_phases), C(cutover_at) and
          C(cutover_seq) (the last cut-over), C(retention_seconds), C(allowed_at), C(allowed), C(seconds_left)."
      type: dict
    blue:
      description: "Step 2.10's clock: C(scaled_down_at), C(remove_at), C(removable), C(seconds_left)."
      type: dict
    phase:
      description: The highest phase whose group is cut over (0 when none).
      type: int
    steps:
      description: Phase to step.
      type: dict
group:
  description: The state of group O(phase), as in RV(migration.groups).
  returned: with O(phase)
  type: dict
reached:
  description: Whether the O(wait_for) condition held (false only with O(fail_on_timeout=false)).
  returned: with O(wait_for)
  type: bool
reason:
  description: Why O(wait_for) gave up, one line (with O(fail_on_timeout=false)).
  returned: when RV(reached) is false
  type: str
waited_seconds:
  description: How long O(wait_for) waited.
  returned: with O(wait_for)
  type: float
progress:
  description: What O(wait_for) saw change while it waited.
  returned: with O(wait_for)
  type: list
  elements: str
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, migration_state
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        legacy_stream=dict(type="str", required=True),
        groups=dict(type="list", elements="dict", required=True),
        phase=dict(type="int"),
        wait_for=dict(type="str", choices=["bound", "bound_legacy", "drained", "recovered"]),
        max_behind=dict(type="int", default=0),
        timeout=durations.duration_option(default=60),
        stall_timeout=durations.duration_option(),
        fail_on_timeout=dict(type="bool", default=True),
        legacy_retention=durations.duration_option(),
        blue_keep=durations.duration_option(),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True)
    run_module(module, migration_state.run, seconds=("timeout", "stall_timeout", "legacy_retention", "blue_keep"))


if __name__ == "__main__":
    main()
