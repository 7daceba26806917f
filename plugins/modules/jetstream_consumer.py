#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: jetstream_consumer
short_description: Create, update, pause or delete a durable JetStream consumer
version_added: "0.1.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - Manages one durable consumer (pull or push) of a JetStream stream.
  - The desired configuration is the live one with the options this task sets merged in; an option left out
    keeps its live value. Comparison ignores the defaults the server fills in (C(max_ack_pending=1000),
    C(max_waiting=512), C(num_replicas=0) meaning "as the stream", reserved C(_nats.*) metadata).
  - A new consumer is written with C(action=create) and an existing one with C(action=update), so a consumer
    created or deleted by someone else while the task runs makes the task fail instead of being replaced.
  - Settings the server cannot change on an existing consumer (O(deliver_policy), O(opt_start_seq),
    O(opt_start_time), O(ack_policy), O(replay_policy), O(mem_storage), O(idle_heartbeat), O(flow_control),
    O(max_waiting), push to pull or back via O(deliver_subject)) are refused before anything is written; the
    message names the field, the live and the asked value.
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Computes and returns the change; writes nothing.
  diff_mode:
    support: full
    details: Before and after in compare form (durations humanized, server defaults left out).
  platform:
    platforms: posix
options:
  stream:
    description: Stream the consumer reads. It must exist (with O(state=absent) a missing stream is fine).
    type: str
    required: true
  name:
    description: Durable name of the consumer.
    type: str
    required: true
    aliases: [durable_name, consumer]
  state:
    description: Whether the consumer should exist.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: Free text shown by C(nats consumer info).
    type: str
  filter_subject:
    description:
      - Only messages on this subject (wildcards allowed) are delivered. V("") removes the filter.
      - Mutually exclusive with O(filter_subjects); setting one removes the other.
    type: str
  filter_subjects:
    description: Several non-overlapping filter subjects (nats-server 2.10+). V([]) removes them.
    type: list
    elements: str
  ack_policy:
    description:
      - How messages are acknowledged. Cannot change after creation.
      - When a new consumer is created and this is left out, V(explicit) is used.
    type: str
    choices: [explicit, none, all]
  ack_wait:
    description: How long the server waits for an ack before redelivering, e.g. V(60s), V(2m) or seconds.
    type: raw
  max_deliver:
    description: Maximum deliveries of one message; V(-1) is unlimited.
    type: int
  backoff:
    description:
      - Redelivery delays, one per delivery attempt (durations). The server takes the first as O(ack_wait);
        when O(ack_wait) is left out it is set to the first step. O(max_deliver) must exceed its length.
    type: list
    elements: raw
  deliver_policy:
    description: Where a new consumer starts. Cannot change after creation.
    type: str
    choices: [all, last, new, by_start_sequence, by_start_time, last_per_subject]
  opt_start_seq:
    description: First stream sequence, with O(deliver_policy=by_start_sequence). Cannot change after creation.
    type: int
  opt_start_time:
    description: RFC 3339 start time, with O(deliver_policy=by_start_time). Cannot change after creation.
    type: str
  replay_policy:
    description: Deliver as fast as possible or at the original pace. Cannot change after creation.
    type: str
    choices: [instant, original]
  max_ack_pending:
    description: Maximum delivered but unacknowledged messages (server default 1000); V(-1) is unlimited.
    type: int
  max_waiting:
    description: Maximum outstanding pull requests (pull consumers; server default 512). Cannot change after creation.
    type: int
  max_batch:
    description: Largest batch a pull request may ask for (pull consumers).
    type: int
  max_expires:
    description: Longest expiry a pull request may ask for (duration; pull consumers).
    type: raw
  max_bytes:
    description: Largest byte count a pull request may ask for (pull consumers).
    type: int
  inactive_threshold:
    description: Delete the consumer after it has been inactive this long (duration); V(0) never.
    type: raw
  headers_only:
    description: Deliver only headers and the payload size, not the payload.
    type: bool
  replicas:
    description: Replicas of the consumer state; V(0) means as many as the stream.
    type: int
    aliases: [num_replicas]
  mem_storage:
    description: Keep the consumer state in memory. Cannot change after creation.
    type: bool
  metadata:
    description:
      - User metadata (string keys and values). When set it replaces the user metadata exactly (V({}) clears it);
        the server's reserved C(_nats.*) keys are kept.
    type: dict
  deliver_subject:
    description: Makes a push consumer that delivers to this subject. A pull consumer cannot become push or back.
    type: str
  deliver_group:
    description: Queue group that shares a push consumer's deliveries.
    type: str
  flow_control:
    description: Push flow control (needs O(idle_heartbeat)). Cannot change after creation.
    type: bool
  idle_heartbeat:
    description: Push idle heartbeat interval (duration). Cannot change after creation.
    type: raw
  rate_limit:
    description: Push delivery rate limit in bits per second.
    type: int
    aliases: [rate_limit_bps]
  sample_freq:
    description: Percentage of acks sampled as advisories, e.g. V(100) or V(50%).
    type: str
  pause_until:
    description:
      - Pause the consumer until this RFC 3339 time (UTC or with an offset). Needs nats-server 2.11 or later.
      - Applied with the server's C(CONSUMER.PAUSE) API; re-running with the same time changes nothing.
    type: str
  paused:
    description:
      - V(false) resumes a paused consumer; V(true) requires O(pause_until). Needs nats-server 2.11 or later.
      - Left out, the pause state is not managed.
    type: bool
notes:
  - Older servers without the named consumer API (before 2.9) are written through C(CONSUMER.DURABLE.CREATE).
  - A stream with interest or work-queue retention requires O(replicas) equal to the stream's (or V(0)).
seealso:
  - module: athlete_ally.nats.consumer_drain
"""

EXAMPLES = r"""
- name: HRV consumer on the new core stream (runbook step 2.2)
  athlete_ally.nats.jetstream_consumer:
    stream: AA_CORE_HOT
    name: normalize-hrv-durable
    filter_subject: athlete-ally.hrv.raw-received
    ack_policy: explicit
    max_deliver: 5
    ack_wait: 60s
    deliver_policy: all
    replay_policy: instant
    max_ack_pending: 1000

- name: Give slow handlers more time (other settings keep their live values)
  athlete_ally.nats.jetstream_consumer:
    stream: AA_CORE_HOT
    name: normalize-hrv-durable
    ack_wait: 2m

- name: Hold deliveries during the cut-over (nats-server 2.11+)
  athlete_ally.nats.jetstream_consumer:
    stream: AA_CORE_HOT
    name: normalize-hrv-durable
    pause_until: "2026-12-01T10:30:00Z"

- name: Resume
  athlete_ally.nats.jetstream_consumer:
    stream: AA_CORE_HOT
    name: normalize-hrv-durable
    paused: false

- name: Roll back (runbook rollback step 4)
  athlete_ally.nats.jetstream_consumer:
    stream: AA_VENDOR_HOT
    name: normalize-oura
    state: absent
"""

RETURN = r"""
stream:
  description: The stream.
  returned: always
  type: str
name:
  description: The consumer's durable name.
  returned: always
  type: str
operation:
  description: What was (or in check mode would be) done.
  returned: always
  type: str
  sample: updated
  choices: [created, updated, deleted, none]
config:
  description:
    - The consumer configuration as the server stores it after the task (durations in nanoseconds).
    - In check mode the predicted configuration. Empty when the consumer does not exist.
  returned: always
  type: dict
  sample: {durable_name: normalize-hrv-durable, ack_policy: explicit, ack_wait: 60000000000, max_deliver: 5}
changed_fields:
  description: Configuration fields that differ (or differed) between the live and the desired consumer.
  returned: always
  type: list
  elements: str
  sample: [ack_wait]
state:
  description: Delivery state of the consumer (empty when it does not exist, or is only about to be created).
  returned: always
  type: dict
  contains:
    num_pending:
      description: Messages matching the filter not yet delivered.
      type: int
    num_ack_pending:
      description: Messages delivered and not yet acknowledged.
      type: int
    num_redelivered:
      description: Pending messages that were delivered more than once.
      type: int
    num_waiting:
      description: Outstanding pull requests.
      type: int
    delivered:
      description: Last delivered C(consumer_seq) and C(stream_seq).
      type: dict
    ack_floor:
      description: Sequences below which everything is acknowledged (C(consumer_seq), C(stream_seq)).
      type: dict
    cluster:
      description: Leader and replicas of the consumer (clustered servers).
      type: dict
    paused:
      description: Whether the consumer is paused now.
      type: bool
    pause_remaining:
      description: Nanoseconds until the pause ends.
      type: int
    created:
      description: Creation time of the consumer.
      type: str
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import consumer
from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import duration_option
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        stream=dict(type="str", required=True),
        name=dict(type="str", required=True, aliases=["durable_name", "consumer"]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        description=dict(type="str"),
        filter_subject=dict(type="str"),
        filter_subjects=dict(type="list", elements="str"),
        ack_policy=dict(type="str", choices=["explicit", "none", "all"]),
        ack_wait=duration_option(),
        max_deliver=dict(type="int"),
        backoff=dict(type="list", elements="raw"),  # durations, each read by to_nanos like duration_option()
        deliver_policy=dict(type="str", choices=["all", "last", "new", "by_start_sequence", "by_start_time",
                                                 "last_per_subject"]),
        opt_start_seq=dict(type="int"),
        opt_start_time=dict(type="str"),
        replay_policy=dict(type="str", choices=["instant", "original"]),
        max_ack_pending=dict(type="int"),
        max_waiting=dict(type="int"),
        max_batch=dict(type="int"),
        max_expires=duration_option(),
        max_bytes=dict(type="int"),
        inactive_threshold=duration_option(),
        headers_only=dict(type="bool"),
        replicas=dict(type="int", aliases=["num_replicas"]),
        mem_storage=dict(type="bool"),
        metadata=dict(type="dict"),
        deliver_subject=dict(type="str"),
        deliver_group=dict(type="str"),
        flow_control=dict(type="bool"),
        idle_heartbeat=duration_option(),
        rate_limit=dict(type="int", aliases=["rate_limit_bps"]),
        sample_freq=dict(type="str"),
        pause_until=dict(type="str"),
        paused=dict(type="bool"),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True,
                          mutually_exclusive=[["filter_subject", "filter_subjects"]])
    run_module(module, consumer.run)


if __name__ == "__main__":
    main()
