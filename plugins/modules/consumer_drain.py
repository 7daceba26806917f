#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: consumer_drain
short_description: Wait until a JetStream consumer has processed its backlog (drain before removing subjects)
version_added: "0.1.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - Polls a consumer until it has processed what it must, then returns counts and the drain rate.
    This is runbook step 2.7 ("drain pending messages from the old consumer first") as one task.
  - B(Drained) means C(num_pending=0), C(num_ack_pending=0), C(num_redelivered=0) and the ack floor equal to the
    last delivery (C(ack_floor.consumer_seq == delivered.consumer_seq)), seen on O(stable_polls) polls in a row.
  - With O(until_stream_seq=N) (a cut-over point on a stream that still receives messages) it is enough that
    C(ack_floor.stream_seq >= N), or that nothing is awaiting an ack and either C(delivered.stream_seq >= N) or
    nothing is pending (a filtered consumer's ack floor may never reach N when later messages do not match its
    filter). Every message up to N is already stored, so that cannot revert; one reading is enough and
    O(stable_polls) does not apply.
  - Fails early when the consumer stalls (neither the ack floor moves nor the outstanding work shrinks for
    O(stall_timeout) while work is pending), and at O(timeout). Both failures are one line naming the option to
    raise and carry the same results as a success (initial and final counts, rate, polls, last info).
  - The module never changes anything; it always reports C(changed=false).
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Polls once, reports the current state and whether it already counts as drained; waits for nothing.
  diff_mode:
    support: none
    details: A drain changes nothing, so there is nothing to diff.
  platform:
    platforms: posix
options:
  stream:
    description: Stream of the consumer.
    type: str
    required: true
  consumer:
    description: Durable name of the consumer to watch.
    type: str
    required: true
    aliases: [name]
  until_stream_seq:
    description:
      - Wait only until the consumer has processed the stream up to this sequence (for example the
        C(cutover_seq) returned by M(athlete_ally.nats.jetstream_subject_move)), not for a fully empty backlog.
    type: int
  stable_polls:
    description:
      - Consecutive polls on which the full drain must hold (guards against a momentary empty reading).
      - Not used with O(until_stream_seq), whose condition cannot revert.
    type: int
    default: 2
  timeout:
    description: Longest wait (duration such as V(300s), V(15m), or seconds); then the task fails.
    type: raw
    default: 300s
  poll_interval:
    description: Time between polls (duration or seconds).
    type: raw
    default: 1s
  stall_timeout:
    description:
      - Fail early when for this long (duration or seconds) the ack floor has not moved and the outstanding work
        (C(num_pending + num_ack_pending)) has not shrunk while work is pending, for example when no worker runs.
      - Set it above the consumer's C(ack_wait) when a slow message can hold the ack floor.
    type: raw
    default: 60s
  progress_file:
    description:
      - Append one line per poll to this file (time, pending, ack pending, ack floor, delivered, acked, rate, ETA).
        Watch a long drain with C(tail -f).
    type: path
notes:
  - Ansible modules cannot stream output while they run; the task prints only when it ends. That is why
    progress goes to O(progress_file), one line per poll, for an operator to follow with C(tail -f).
  - A failed poll (for example a leader election timing out one request) is counted in RV(poll_errors) and the
    drain continues; the deadline and the stall clock keep running.
  - The rate counts acknowledged deliveries (movement of the ack floor's consumer sequence) per second since the
    task started.
seealso:
  - module: athlete_ally.nats.jetstream_consumer
  - module: athlete_ally.nats.jetstream_subject_move
"""

EXAMPLES = r"""
- name: Drain the old HRV consumer before removing subjects (runbook step 2.7)
  athlete_ally.nats.consumer_drain:
    stream: ATHLETE_ALLY_EVENTS
    consumer: normalize-hrv-durable
    timeout: 30m
    stall_timeout: 2m
    progress_file: /var/log/phase2/drain-hrv.log
  register: drain

- name: Report
  ansible.builtin.debug:
    msg: "drained {{ drain.acked }} messages in {{ drain.elapsed }}s ({{ drain.rate }} msgs/s)"

- name: Wait only for everything up to the cut-over point (the stream still receives messages)
  athlete_ally.nats.consumer_drain:
    stream: ATHLETE_ALLY_EVENTS
    consumer: normalize-hrv-durable
    until_stream_seq: "{{ cutover.cutover_seq }}"
"""

RETURN = r"""
drained:
  description: Whether the condition held (in check mode, whether it holds right now).
  returned: always
  type: bool
stream:
  description: The stream.
  returned: always
  type: str
consumer:
  description: The consumer.
  returned: always
  type: str
until_stream_seq:
  description: The cut-over sequence waited for, if any.
  returned: always
  type: int
initial:
  description: Counts at the first poll.
  returned: always
  type: dict
  contains:
    num_pending:
      description: Messages not yet delivered.
      type: int
    num_ack_pending:
      description: Messages delivered and not yet acknowledged.
      type: int
    num_redelivered:
      description: Pending messages delivered more than once.
      type: int
    delivered:
      description: C(consumer_seq) and C(stream_seq) of the last delivery.
      type: dict
    ack_floor:
      description: C(consumer_seq) and C(stream_seq) below which everything is acknowledged.
      type: dict
final:
  description: Counts at the last successful poll (same keys as RV(initial)).
  returned: always
  type: dict
elapsed:
  description: Seconds the task waited.
  returned: always
  type: float
acked:
  description: Deliveries acknowledged while the task waited (movement of C(ack_floor.consumer_seq)).
  returned: always
  type: int
rate:
  description: Drain rate, acknowledged deliveries per second.
  returned: always
  type: float
polls:
  description: Successful polls.
  returned: always
  type: int
poll_errors:
  description: Polls that failed and were ridden out.
  returned: always
  type: int
last_poll_error:
  description: Message of the last failed poll, if any.
  returned: always
  type: str
info:
  description: The last consumer info the server returned.
  returned: always
  type: dict
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import drain
from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import duration_option
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        stream=dict(type="str", required=True),
        consumer=dict(type="str", required=True, aliases=["name"]),
        until_stream_seq=dict(type="int"),
        stable_polls=dict(type="int", default=2),
        timeout=duration_option(default="300s"),
        poll_interval=duration_option(default="1s"),
        stall_timeout=duration_option(default="60s"),
        progress_file=dict(type="path"),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True)
    run_module(module, drain.run)


if __name__ == "__main__":
    main()
