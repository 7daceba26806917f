#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: jetstream_publish
short_description: Publish one message to a NATS JetStream stream and return its ack
version_added: 0.1.0
description:
  - Publishes one message as a request and parses the JetStream publish acknowledgement, like
    C(nats pub --jetstream). Used for smoke tests such as the runbook's DLQ test publish.
  - Retries with exponential backoff when nothing answers (no stream captures the subject yet, or a
    stream leader is being elected) and on timeouts. An ack carrying an error is not retried.
  - Set O(msg_id) to make the task idempotent and retries safe; a repeat within the stream's
    duplicate window is acknowledged with C(duplicate) and reported as not changed.
options:
  subject:
    description: Subject to publish on; a stream must capture it.
    type: str
    required: true
  payload:
    description: Message body as a string. Mutually exclusive with O(payload_json). Empty when neither is set.
    type: str
  payload_json:
    description: Message body as a dict, sent as compact JSON.
    type: dict
  headers:
    description: Message headers; values are sent as strings.
    type: dict
    default: {}
  msg_id:
    description: Sets the C(Nats-Msg-Id) header, which the stream uses to drop duplicates.
    type: str
  expected_stream:
    description: Sets the C(Nats-Expected-Stream) header; the publish fails unless this stream stores it.
    type: str
  retries:
    description: Extra attempts after the first on no responders or a timeout.
    type: int
    default: 5
  retry_delay:
    description: Wait before the first retry (duration such as V(250ms), or seconds); doubles after each failed attempt.
    type: raw
    default: 0.25
  retry_max_delay:
    description: Upper bound for one backoff delay (duration or seconds).
    type: raw
    default: 5.0
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Publishes nothing and reports RV(ignore:changed=true).
  diff_mode:
    support: none
    details: A publish has no before and after to compare.
  platform:
    platforms: posix
notes:
  - A timeout may hide a stored message whose ack was lost; without O(msg_id) the retry can store it twice.
author:
  - Athlete Ally Platform Team (@athlete-ally)
"""

EXAMPLES = r"""
- name: Test the DLQ (runbook step 0.4)
  athlete_ally.nats.jetstream_publish:
    subject: dlq.test.phase0
    payload_json: {test: dlq-verification, phase: 0}
    msg_id: "phase0-dlq-check-{{ run_id }}"
    expected_stream: AA_DLQ
  register: pub

- name: Stored in AA_DLQ
  ansible.builtin.assert:
    that: pub.ack.stream == 'AA_DLQ'

- name: Raw payload with headers
  athlete_ally.nats.jetstream_publish:
    subject: vendor.oura.webhook.received
    payload: "{{ lookup('ansible.builtin.file', 'fixtures/oura.json') }}"
    headers:
      Content-Type: application/json
    retries: 2
"""

RETURN = r"""
ack:
  description: The publish acknowledgement; null in check mode.
  returned: success
  type: dict
  contains:
    stream:
      description: Stream that stored the message.
      type: str
    seq:
      description: Sequence number of the message in that stream.
      type: int
    duplicate:
      description: The stream already had a message with this O(msg_id).
      type: bool
    domain:
      description: JetStream domain, when the server has one.
      type: str
  sample: {stream: AA_DLQ, seq: 1, duplicate: false, domain: null}
attempts:
  description: Publish attempts made (0 in check mode); also returned on failure.
  returned: always
  type: int
  sample: 1
subject:
  description: The subject published to.
  returned: always
  type: str
  sample: dlq.test.phase0
msg_id:
  description: The O(msg_id) sent, if any.
  returned: always
  type: str
size:
  description: Payload size in bytes.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, publish
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        subject=dict(type="str", required=True),
        payload=dict(type="str"),
        payload_json=dict(type="dict"),
        headers=dict(type="dict", default={}),
        msg_id=dict(type="str"),
        expected_stream=dict(type="str"),
        retries=dict(type="int", default=5),
        # durations; run_module turns them into seconds for publish.publish
        retry_delay=durations.duration_option(default=0.25),
        retry_max_delay=durations.duration_option(default=5.0),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True, mutually_exclusive=[["payload", "payload_json"]])
    run_module(module, publish.publish, seconds=("retry_delay", "retry_max_delay"))


if __name__ == "__main__":
    main()
