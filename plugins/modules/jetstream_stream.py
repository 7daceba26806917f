#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: jetstream_stream
short_description: Create, update, purge and delete NATS JetStream streams
version_added: "0.1.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - Makes a JetStream stream match the task. Options the task leaves out keep their live values; the live
    configuration (including fields this module does not know and the server's reserved C(_nats.*) metadata)
    is merged with the task's settings and sent whole to C(STREAM.CREATE) or C(STREAM.UPDATE).
  - Idempotent on nats-server 2.10 to 2.15. Configurations are compared after removing server defaults
    (for example C(max_msgs=-1), a 2 minute duplicate window), ignoring subject order and reserved metadata,
    and comparing durations in nanoseconds.
  - Changes the server forbids (storage type, retention to or from C(workqueue), switching C(sealed),
    C(deny_delete), C(deny_purge) or C(allow_msg_ttl) back off, changing a mirror, C(max_consumers) before
    nats-server 2.12.5) and subjects that overlap another stream are refused before anything is written, naming
    the field, the live value and the asked value, or the other stream and the overlapping subjects.
  - Can purge messages (all, by subject, keeping the newest N, or below a sequence) and delete streams;
    deleting a stream that holds messages needs O(force) or O(only_if_empty).
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the live stream and reports what would change, including refusals of changes the server forbids;
        writes nothing. A purge in check mode reports an estimate of the messages it would remove.
  diff_mode:
    support: full
    details:
      - Before and after in the compared (canonical) form, durations written as V(14d)/V(2m).
  platform:
    platforms: posix
options:
  name:
    description: Stream name; no C(.), C(*), C(>), C(/), C(\) or whitespace.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the stream; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  subjects:
    description:
      - Subjects the stream listens on. Order does not matter.
      - An empty list on a stream without O(sources) or O(mirror) makes the server listen on the stream's own
        name; the module treats it as equal to V([<name>]) and warns.
    type: list
    elements: str
  description:
    description: Free-text description.
    type: str
  storage:
    description: Storage backend. Fixed at creation.
    type: str
    choices: [file, memory]
  retention:
    description: Retention policy. Can not change to or from V(workqueue) after creation.
    type: str
    choices: [limits, interest, workqueue]
  max_age:
    description:
      - Maximum message age, as V(48h), V(14d), V(2m), V(500ms) or seconds. V(0) is unlimited.
    type: raw
  max_msgs:
    description: Maximum number of messages; V(-1) is unlimited.
    type: int
  max_bytes:
    description: Maximum total size in bytes; V(-1) is unlimited.
    type: int
  max_msg_size:
    description: Maximum size of one message in bytes; V(-1) is unlimited.
    type: int
  max_msgs_per_subject:
    description: Maximum messages kept per subject; V(-1) is unlimited.
    type: int
  max_consumers:
    description: Maximum number of consumers; V(-1) is unlimited. Fixed at creation before nats-server 2.12.5.
    type: int
  replicas:
    description: Number of replicas (JSON C(num_replicas)), 1 to 5.
    type: int
  discard:
    description: What to discard when a limit is reached.
    type: str
    choices: [old, new]
  discard_new_per_subject:
    description: Apply O(discard=new) per subject; needs O(discard=new) and O(max_msgs_per_subject) > 0.
    type: bool
  duplicate_window:
    description:
      - Window for duplicate detection by C(Nats-Msg-Id), as V(2m), V(120s) or seconds. The server default is
        2 minutes (or O(max_age) when shorter).
    type: raw
  compression:
    description: On-disk compression (file storage).
    type: str
    choices: [none, s2]
  sources:
    description:
      - Streams this stream copies messages from. Replaces the live list when given. Order does not matter.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the origin stream.
        type: str
        required: true
      filter_subject:
        description: Only copy messages on this subject.
        type: str
      opt_start_seq:
        description: Start copying at this sequence of the origin.
        type: int
      opt_start_time:
        description: Start copying at this time (RFC 3339).
        type: str
      subject_transforms:
        description: Subject transforms applied while copying (instead of O(sources[].filter_subject)).
        type: list
        elements: dict
        suboptions:
          src:
            description: Source subject filter.
            type: str
            required: true
          dest:
            description: Destination subject template.
            type: str
            required: true
      external:
        description: The origin lives in another account or domain.
        type: dict
        suboptions:
          api:
            description: API prefix of the other account or domain.
            type: str
          deliver:
            description: Delivery subject prefix.
            type: str
  mirror:
    description:
      - Makes the stream a mirror of another stream (same shape as one O(sources) entry). Fixed at creation;
        a mirror has no subjects.
    type: dict
    suboptions:
      name:
        description: Name of the origin stream.
        type: str
        required: true
      filter_subject:
        description: Only mirror messages on this subject.
        type: str
      opt_start_seq:
        description: Start mirroring at this sequence of the origin.
        type: int
      opt_start_time:
        description: Start mirroring at this time (RFC 3339).
        type: str
      subject_transforms:
        description: Subject transforms applied while mirroring.
        type: list
        elements: dict
        suboptions:
          src:
            description: Source subject filter.
            type: str
            required: true
          dest:
            description: Destination subject template.
            type: str
            required: true
      external:
        description: The origin lives in another account or domain.
        type: dict
        suboptions:
          api:
            description: API prefix of the other account or domain.
            type: str
          deliver:
            description: Delivery subject prefix.
            type: str
  subject_transform:
    description: Transform applied to the subject of incoming messages before they are stored.
    type: dict
    suboptions:
      src:
        description: Subject filter the transform applies to.
        type: str
        required: true
      dest:
        description: Destination subject template.
        type: str
        required: true
  republish:
    description: Republish stored messages to another subject.
    type: dict
    suboptions:
      src:
        description: Subject filter of messages to republish; the server default is V(>).
        type: str
      dest:
        description: Destination subject template.
        type: str
        required: true
      headers_only:
        description: Republish only headers, no payload.
        type: bool
  placement:
    description: Where the stream's replicas are placed.
    type: dict
    suboptions:
      cluster:
        description: Cluster name.
        type: str
      tags:
        description: Server tags the replicas must have.
        type: list
        elements: str
  metadata:
    description:
      - User metadata (string keys and values). Without O(metadata_merge) it replaces the live user metadata.
      - Reserved C(_nats.*) keys set by the server are always kept and never reported as changes.
    type: dict
  metadata_merge:
    description:
      - When V(true), O(metadata) keys are added or updated and other live user keys are kept
        (the migration playbooks record their progress this way).
    type: bool
    default: false
  allow_direct:
    description: Allow direct get of messages from any replica.
    type: bool
  mirror_direct:
    description: Allow direct get from this mirror on behalf of its origin.
    type: bool
  allow_rollup_hdrs:
    description: Allow the C(Nats-Rollup) header to purge older messages; not with O(deny_purge).
    type: bool
  deny_delete:
    description: Forbid deleting single messages. Once V(true) it can not be switched back.
    type: bool
  deny_purge:
    description: Forbid purging. Once V(true) it can not be switched back.
    type: bool
  sealed:
    description: Seal the stream (no more writes, deletes or purges). Once V(true) it can not be switched back.
    type: bool
  no_ack:
    description: Do not acknowledge publishes.
    type: bool
  allow_msg_ttl:
    description:
      - Allow per-message TTLs (C(Nats-TTL) header). Needs nats-server 2.11; once V(true) it can not be
        switched back, and before nats-server 2.12 it is fixed at creation.
    type: bool
  consumer_limits:
    description: Defaults and limits for consumers of this stream.
    type: dict
    suboptions:
      inactive_threshold:
        description: Inactivity threshold, as V(5m), V(30s) or seconds.
        type: raw
      max_ack_pending:
        description: Maximum outstanding acks per consumer.
        type: int
  purge:
    description:
      - With O(state=present), purge messages after the stream is configured. Reports a change only when
        messages were removed. Narrowed by O(purge_subject), O(purge_keep) and O(purge_up_to_seq).
    type: bool
    default: false
  purge_subject:
    description: Purge only messages on this subject (wildcards allowed). Needs O(purge=true).
    type: str
  purge_keep:
    description: Keep this many of the newest (matching) messages. Needs O(purge=true).
    type: int
  purge_up_to_seq:
    description: Purge (matching) messages with a sequence below this one. Needs O(purge=true).
    type: int
  force:
    description: With O(state=absent), delete the stream even when it holds messages.
    type: bool
    default: false
  only_if_empty:
    description: With O(state=absent), delete the stream only when it holds no messages; fail otherwise.
    type: bool
    default: false
notes:
  - O(republish), O(subject_transform), O(placement) and O(consumer_limits) merge into the live values;
    a field left out keeps its live value.
"""

EXAMPLES = r"""
- name: Dead-letter stream of the Phase 2 runbook
  athlete_ally.nats.jetstream_stream:
    name: AA_DLQ
    subjects: ["dlq.>"]
    storage: file
    retention: limits
    max_age: 14d
    max_msgs: -1
    max_bytes: -1
    replicas: 3
    discard: old
    duplicate_window: 2m
    compression: s2

- name: Shadow stream copying the legacy stream from a known sequence
  athlete_ally.nats.jetstream_stream:
    name: AA_CORE_SHADOW
    sources:
      - name: ATHLETE_ALLY_EVENTS
        opt_start_seq: 1200
        filter_subject: "athlete-ally.>"

- name: Record migration progress without touching other metadata
  athlete_ally.nats.jetstream_stream:
    name: ATHLETE_ALLY_EVENTS
    metadata:
      migration_phase: "2"
    metadata_merge: true

- name: Stop the legacy stream capturing vendor subjects
  athlete_ally.nats.jetstream_stream:
    name: ATHLETE_ALLY_EVENTS
    subjects: ["athlete-ally.>", "sleep.*"]

- name: Remove the runbook's test message
  athlete_ally.nats.jetstream_stream:
    name: AA_DLQ
    purge: true
    purge_subject: dlq.test.phase0

- name: Delete the drained legacy stream, refusing if anything is left in it
  athlete_ally.nats.jetstream_stream:
    name: ATHLETE_ALLY_EVENTS
    state: absent
    only_if_empty: true
"""

RETURN = r"""
name:
  description: Stream name.
  returned: always
  type: str
  sample: AA_DLQ
config:
  description:
    - Raw live stream configuration after the task (durations in nanoseconds). In check mode, the configuration
      that would be sent. Empty after deletion.
  returned: always
  type: dict
  sample: {"name": "AA_DLQ", "subjects": ["dlq.>"], "max_age": 1209600000000000, "num_replicas": 3}
state:
  description: Stream state (before deletion for O(state=absent)).
  returned: always
  type: dict
  contains:
    messages:
      description: Messages stored.
      type: int
    bytes:
      description: Bytes stored.
      type: int
    first_seq:
      description: First sequence.
      type: int
    last_seq:
      description: Last sequence.
      type: int
    first_ts:
      description: Time of the first message.
      type: str
    last_ts:
      description: Time of the last message.
      type: str
    consumer_count:
      description: Number of consumers.
      type: int
cluster:
  description: Raft group of a clustered stream; empty on a single server.
  returned: always
  type: dict
  contains:
    name:
      description: Cluster name.
      type: str
    leader:
      description: Server leading the stream.
      type: str
    replicas:
      description: Other peers, each with C(name), C(current), C(lag) and C(offline).
      type: list
      elements: dict
changed_fields:
  description: Top-level configuration fields that differ between the live and the task's configuration.
  returned: always
  type: list
  elements: str
  sample: ["max_age"]
purged:
  description: Messages purged (estimated in check mode).
  returned: when O(purge=true)
  type: int
deleted_messages:
  description: Messages the deleted stream held.
  returned: when a stream was deleted
  type: int
diff:
  description: Canonical configuration before and after.
  returned: in diff mode
  type: dict
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import stream
from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import duration_option
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module

_TRANSFORM = dict(src=dict(type="str", required=True), dest=dict(type="str", required=True))
_SOURCE = dict(
    name=dict(type="str", required=True),
    filter_subject=dict(type="str"),
    opt_start_seq=dict(type="int"),
    opt_start_time=dict(type="str"),
    subject_transforms=dict(type="list", elements="dict", options=_TRANSFORM),
    external=dict(type="dict", options=dict(api=dict(type="str"), deliver=dict(type="str"))),
)


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        subjects=dict(type="list", elements="str"),
        description=dict(type="str"),
        storage=dict(type="str", choices=["file", "memory"]),
        retention=dict(type="str", choices=["limits", "interest", "workqueue"]),
        max_age=duration_option(),
        max_msgs=dict(type="int"),
        max_bytes=dict(type="int"),
        max_msg_size=dict(type="int"),
        max_msgs_per_subject=dict(type="int"),
        max_consumers=dict(type="int"),
        replicas=dict(type="int"),
        discard=dict(type="str", choices=["old", "new"]),
        discard_new_per_subject=dict(type="bool"),
        duplicate_window=duration_option(),
        compression=dict(type="str", choices=["none", "s2"]),
        sources=dict(type="list", elements="dict", options=_SOURCE),
        mirror=dict(type="dict", options=_SOURCE),
        subject_transform=dict(type="dict", options=_TRANSFORM),
        republish=dict(type="dict", options=dict(src=dict(type="str"), dest=dict(type="str", required=True),
                                                 headers_only=dict(type="bool"))),
        placement=dict(type="dict", options=dict(cluster=dict(type="str"),
                                                 tags=dict(type="list", elements="str"))),
        metadata=dict(type="dict"),
        metadata_merge=dict(type="bool", default=False),
        allow_direct=dict(type="bool"),
        mirror_direct=dict(type="bool"),
        allow_rollup_hdrs=dict(type="bool"),
        deny_delete=dict(type="bool"),
        deny_purge=dict(type="bool"),
        sealed=dict(type="bool"),
        no_ack=dict(type="bool"),
        allow_msg_ttl=dict(type="bool"),
        consumer_limits=dict(type="dict", options=dict(inactive_threshold=duration_option(),
                                                       max_ack_pending=dict(type="int"))),
        purge=dict(type="bool", default=False),
        purge_subject=dict(type="str"),
        purge_keep=dict(type="int"),
        purge_up_to_seq=dict(type="int"),
        force=dict(type="bool", default=False),
        only_if_empty=dict(type="bool", default=False),
    )


def main():
    module = build_module(
        argument_spec(), supports_check_mode=True,
        mutually_exclusive=[["force", "only_if_empty"], ["purge_keep", "purge_up_to_seq"], ["mirror", "sources"]],
    )
    run_module(module, stream.run)


if __name__ == "__main__":
    main()
