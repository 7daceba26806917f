#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: jetstream_info
short_description: Read NATS JetStream cluster, account, stream and consumer facts
version_added: 0.1.0
description:
  - Read-only counterpart of C(nats server list), C(nats account info), C(nats stream ls),
    C(nats stream info) and C(nats consumer info), for asserts in runbook playbooks.
  - Never changes anything and is safe in check mode; RV(ignore:changed) is always V(false).
  - A missing stream or consumer is not an error; the result says RV(stream.exists=false) or
    RV(consumer.exists=false).
options:
  gather:
    description:
      - Which facts to collect.
      - V(cluster) needs a connection in the system account, see O(system_user) and O(system_creds_file).
      - Default is V(account) and V(streams), plus V(stream) when O(stream) is set and V(consumer) when
        O(consumer) is set.
    type: list
    elements: str
    choices: [cluster, account, streams, stream, consumer, stream_list, consumer_list]
  stream:
    description: Stream name for O(gather=stream) and O(gather=consumer).
    type: str
  consumer:
    description: Durable consumer name for O(gather=consumer); needs O(stream).
    type: str
  stream_list:
    description:
      - Streams read at once for O(gather=stream_list), returned as RV(stream_list) keyed by name; one task
        instead of a loop over O(stream) (each loop item is a module run).
    type: list
    elements: str
  consumer_list:
    description:
      - Consumers read at once for O(gather=consumer_list), returned as RV(consumer_list) keyed by C(STREAM/name).
    type: list
    elements: dict
    suboptions:
      stream:
        description: The consumer's stream.
        type: str
        required: true
      name:
        description: The durable name.
        type: str
        required: true
      max_pending:
        description: Its bound for O(wait_for=consumers_pending_below); default O(max_pending).
        type: int
  system_user:
    description:
      - User of the system account, for O(gather=cluster) (C($SYS.REQ.SERVER.PING.JSZ)).
      - Opens a second connection with the same servers and TLS settings. When neither this nor
        O(system_creds_file) is set, the main connection is used and must be in the system account.
    type: str
  system_password:
    description: Password for O(system_user). Never logged.
    type: str
  system_creds_file:
    description: C(.creds) file of a system-account user, instead of O(system_user).
    type: path
  wait_for:
    description:
      - Gather again until a value the cluster converges to holds, instead of reading it once. Several conditions
        must all hold.
      - V(stream_current), O(stream) exists, has a leader and every replica is current;
        V(streams_current), the same for every O(stream_list) entry;
        V(cluster_current), every JetStream peer is current (needs O(gather=cluster) rights);
        V(consumer_pending_below), O(consumer) has fewer than O(max_pending) messages pending;
        V(consumers_pending_below), every O(consumer_list) entry has fewer than its C(max_pending).
      - Transient errors (a leader election) count as "not yet". On timeout the task fails with one line saying
        what is still missing, and returns the last facts seen.
      - Without O(gather), gathers just what the condition needs.
    type: list
    elements: str
    choices: [cluster_current, consumer_pending_below, consumers_pending_below, stream_current, streams_current]
  max_pending:
    description: The bound for O(wait_for=consumer_pending_below), and the default one of O(consumer_list).
    type: int
    default: 0
  timeout:
    description: How long O(wait_for) waits (seconds, or a duration such as V(2m)).
    type: raw
    default: 30
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
author:
  - Athlete Ally Platform Team (@athlete-ally)
"""

EXAMPLES = r"""
- name: All three nodes up and current (runbook T-1h check)
  athlete_ally.nats.jetstream_info:
    servers: ["nats://nats1.prod:4222", "nats://nats2.prod:4222", "nats://nats3.prod:4222"]
    gather: [cluster]
    system_user: sys
    system_password: "{{ vault_nats_sys_password }}"
  register: nats
  failed_when: not nats.cluster.all_current or nats.cluster.peers | length != 3

- name: DLQ stream as the runbook expects it
  athlete_ally.nats.jetstream_info:
    stream: AA_DLQ
  register: dlq

- name: Check the DLQ stream
  ansible.builtin.assert:
    that:
      - dlq.stream.exists
      - dlq.stream.config.subjects == ['dlq.>']
      - dlq.stream.config.max_age == 1209600000000000
      - dlq.stream.config.num_replicas == 3
      - dlq.stream.state.messages == 0

- name: Consumer backlog
  athlete_ally.nats.jetstream_info:
    stream: ATHLETE_ALLY_EVENTS
    consumer: normalize-hrv-durable
  register: legacy

- name: Backlog below 100
  ansible.builtin.assert:
    that: legacy.consumer.exists and legacy.consumer.num_pending < 100

- name: Two streams and their consumers in one run, once every replica is current and each backlog under its bound
  athlete_ally.nats.jetstream_info:
    stream_list: [AA_CORE_HOT, AA_DLQ]
    consumer_list:
      - {stream: AA_CORE_HOT, name: normalize-hrv-durable, max_pending: 10}
      - {stream: AA_DLQ, name: dlq-monitor}
    max_pending: 100
    wait_for: [streams_current, consumers_pending_below]
  register: topology
"""

RETURN = r"""
stream_list:
  description: Each O(stream_list) stream's facts (as RV(stream)), keyed by its name.
  returned: with O(gather=stream_list)
  type: dict
consumer_list:
  description: Each O(consumer_list) consumer's facts (as RV(consumer)) and its C(max_pending), keyed by C(STREAM/name).
  returned: with O(gather=consumer_list)
  type: dict
waited_seconds:
  description: How long O(wait_for) waited.
  returned: with O(wait_for)
  type: float
gathered:
  description: The sections collected.
  returned: always
  type: list
  elements: str
  sample: [account, streams]
cluster:
  description: JetStream meta-group view, from the meta leader's C(JSZ) reply plus every server's own reply.
  returned: when O(gather) contains V(cluster)
  type: dict
  contains:
    name:
      description: Cluster name.
      type: str
    leader:
      description: Meta leader server name (null without quorum).
      type: str
    cluster_size:
      description: Number of JetStream peers the meta group expects.
      type: int
    quorum_needed:
      description: Peers needed for a quorum.
      type: int
    peers_current:
      description: Peers that are current and not offline.
      type: int
    servers_responded:
      description: Servers that answered the ping.
      type: int
    all_current:
      description: Every peer answered, is current and is not offline.
      type: bool
    peers:
      description: One entry per server.
      type: list
      elements: dict
      sample:
        - {name: n1, leader: true, current: true, offline: false, lag: 0, active_ms: 0, version: 2.15.1,
           jetstream: true, cluster: c, host: 10.0.0.1, responded: true}
account:
  description: C($JS.API.INFO) reply (usage, limits, API counters, domain).
  returned: when O(gather) contains V(account)
  type: dict
  sample: {memory: 0, storage: 1024, streams: 3, consumers: 4, limits: {max_streams: -1}, api: {level: 1}}
streams:
  description: Summary of every stream, sorted by name.
  returned: when O(gather) contains V(streams)
  type: list
  elements: dict
  sample:
    - {name: AA_DLQ, subjects: ["dlq.>"], messages: 0, bytes: 0, consumers: 0, replicas: 3, storage: file,
       retention: limits, max_age: 1209600000000000, leader: n2, replicas_current: 3}
stream:
  description:
    - C(STREAM.INFO) reply (C(config), C(state), C(cluster), C(created), ...) plus the keys below.
    - Only RV(stream.exists) and RV(stream.name) when the stream does not exist.
  returned: when O(gather) contains V(stream)
  type: dict
  sample: {exists: true, name: AA_DLQ, config: {subjects: ["dlq.>"]}, state: {messages: 0}}
  contains:
    exists:
      description: Whether the stream exists.
      type: bool
    name:
      description: The O(stream) asked for.
      type: str
    summary:
      description: The same summary as an RV(streams) item.
      type: dict
      returned: when the stream exists
consumer:
  description:
    - C(CONSUMER.INFO) reply (C(config), C(num_pending), C(num_ack_pending), C(delivered), ...) plus the
      keys below.
    - Only RV(consumer.exists), RV(consumer.stream) and RV(consumer.name) when the stream or consumer
      does not exist.
  returned: when O(gather) contains V(consumer)
  type: dict
  sample: {exists: true, stream: AA_VENDOR_HOT, name: normalize-oura, num_pending: 0}
  contains:
    exists:
      description: Whether the stream and the consumer exist.
      type: bool
    stream:
      description: The O(stream) asked for.
      type: str
    name:
      description: The O(consumer) asked for.
      type: str
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, info
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        gather=dict(type="list", elements="str", choices=info.GATHER_CHOICES),
        stream=dict(type="str"),
        consumer=dict(type="str"),
        stream_list=dict(type="list", elements="str"),
        consumer_list=dict(type="list", elements="dict", options=dict(
            stream=dict(type="str", required=True),
            name=dict(type="str", required=True),
            max_pending=dict(type="int"))),
        system_user=dict(type="str"),
        system_password=dict(type="str", no_log=True),
        system_creds_file=dict(type="path"),
        wait_for=dict(type="list", elements="str", choices=sorted(info.WAIT_CONDITIONS)),
        max_pending=dict(type="int", default=0),
        timeout=durations.duration_option(default=30),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True,
                          required_together=[["system_user", "system_password"]],
                          mutually_exclusive=[["system_user", "system_creds_file"]],
                          required_by=dict(consumer=["stream"]))
    run_module(module, info.run)


if __name__ == "__main__":
    main()
