#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: dlq_replay
short_description: Republish dead-lettered messages to their original subjects, then remove them from the DLQ
version_added: 0.1.0
description:
  - Walks the DLQ stream by sequence (C(STREAM.MSG.GET) with C(next_by_subj); no consumer is created) up to its
    last sequence as read at the start, selects dead letters by original subject, time or failure reason, and
    republishes each to the subject named in its O(original_subject_header) with the dead letter's other headers
    and body.
  - A dead letter is deleted from the DLQ (C(STREAM.MSG.DELETE)) only after a stream other than the DLQ
    acknowledged its republish.
  - The republish's C(Nats-Msg-Id) is O(id_prefix) plus the dead letter's own identity (O(identity_header), else
    C(<stream>:<seq>)), never the original publish's id, which the target stream would drop as a duplicate of the
    original within its duplicate window. A run killed between the republish's ack and the delete therefore
    republishes as a duplicate on the next run (nothing stored twice) and then deletes.
options:
  stream:
    description: The DLQ stream (C(migration.dlq.stream)).
    type: str
    required: true
  original_subject_header:
    description: Header of a dead letter that names the subject it was first published on (service contract).
    type: str
    required: true
  reason_header:
    description: Header of a dead letter that holds the failure reason; needed by O(reason). Not republished.
    type: str
  identity_header:
    description: Header holding the dead letter's own unique id (the service sets it when dead-lettering).
    type: str
    default: Nats-Msg-Id
  id_prefix:
    description: Prefix of the republish's C(Nats-Msg-Id).
    type: str
    default: "replay:"
  strip_headers:
    description: Headers the service adds when dead-lettering, not republished.
    type: list
    elements: str
    default: []
  subjects:
    description: Replay only dead letters whose original subject lies inside one of these (wildcards allowed).
    type: list
    elements: str
    default: []
  since:
    description: Replay only dead letters stored in the DLQ at or after this time (RFC 3339) or this long ago (C(2h)).
    type: str
  up_to:
    description:
      - Replay only dead letters stored in the DLQ at or before this time (RFC 3339) or this long ago.
      - Not called C(until), which ansible-lint reads as the task keyword.
    type: str
  reason:
    description: Replay only dead letters whose O(reason_header) contains this text (case-insensitive).
    type: str
  max_messages:
    description: Stop after this many matching dead letters (0 = all).
    type: int
    default: 0
  publish_retries:
    description: Extra attempts of a republish after no responders or a timeout (the message id dedupes them).
    type: int
    default: 5
  retry_delay:
    description: Wait before the first republish retry (duration or seconds); doubles after each failure.
    type: raw
    default: 0.25
  retry_max_delay:
    description: Upper bound of one republish retry delay (duration or seconds).
    type: raw
    default: 5.0
  progress_file:
    description: Append a line every O(progress_every) matching dead letters and at the end; follow with C(tail -f).
    type: path
  progress_every:
    description: Matching dead letters between two progress lines.
    type: int
    default: 50
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be republished (RV(messages)); sends and deletes nothing.
  diff_mode:
    support: none
    details: Nothing to compare; RV(messages) lists the dead letters handled.
  platform:
    platforms: posix
notes:
  - Ansible modules cannot stream output while they run; progress goes to O(progress_file).
  - Dead letters that name no original subject, or one the DLQ itself captures, are never replayed; they are
    counted in RV(unreplayable) and left in the DLQ.
author:
  - Athlete Ally Platform Team (@athlete-ally)
"""

EXAMPLES = r"""
- name: Replay the HRV dead letters of the last 2 hours that failed on the database
  athlete_ally.nats.dlq_replay:
    stream: AA_DLQ
    original_subject_header: X-Original-Subject
    reason_header: X-Failure-Reason
    strip_headers: [X-Original-Stream, X-Consumer, X-Deliveries]
    subjects: ["athlete-ally.hrv.>"]
    since: 2h
    reason: database
    progress_file: /var/log/dlq-replay.log
"""

RETURN = r"""
scanned:
  description: Dead letters read.
  returned: always
  type: int
matched:
  description: Dead letters selected by the filters (in check mode, those that would be replayed).
  returned: always
  type: int
replayed:
  description: Republishes the target stream stored as new messages.
  returned: always
  type: int
duplicates:
  description: Republishes acknowledged as duplicates (replayed by an earlier, interrupted run).
  returned: always
  type: int
deleted:
  description: Dead letters deleted from the DLQ after their republish was acknowledged.
  returned: always
  type: int
unreplayable:
  description: Dead letters without a usable original subject (left in the DLQ).
  returned: always
  type: int
messages:
  description: The matched dead letters (at most 200), each with C(ack) (the stream's acknowledgement) when republished.
  returned: always
  type: list
  elements: dict
  sample: [{dlq_seq: 12, subject: athlete-ally.hrv.raw-received, msg_id: "replay:dlq:AA_CORE_HOT:812",
            time: "2026-12-04T20:10:01.120000Z", reason: "database: connection refused",
            ack: {stream: AA_CORE_HOT, seq: 1031, duplicate: false, domain: null}}]
last_seq:
  description: The DLQ's last sequence when the run started; later dead letters wait for the next run.
  returned: success
  type: int
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import dlq_replay, durations
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        stream=dict(type="str", required=True),
        original_subject_header=dict(type="str", required=True),
        reason_header=dict(type="str"),
        identity_header=dict(type="str", default=dlq_replay.MSG_ID),
        id_prefix=dict(type="str", default="replay:"),
        strip_headers=dict(type="list", elements="str", default=[]),
        subjects=dict(type="list", elements="str", default=[]),
        since=dict(type="str"),
        up_to=dict(type="str"),
        reason=dict(type="str"),
        max_messages=dict(type="int", default=0),
        publish_retries=dict(type="int", default=5),
        retry_delay=durations.duration_option(default=0.25),
        retry_max_delay=durations.duration_option(default=5.0),
        progress_file=dict(type="path"),
        progress_every=dict(type="int", default=50),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True)
    run_module(module, dlq_replay.dlq_replay, seconds=("retry_delay", "retry_max_delay"))


if __name__ == "__main__":
    main()
