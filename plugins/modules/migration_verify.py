#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_verify
short_description: Send a verification event and gather the evidence that the migration carries it, in one run
version_added: "0.3.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - The evidence of the runbook's verification steps (1.5, 1.7, 2.5-2.6, 2.8-2.9) in one module run; the playbook
    asserts on what it returns.
  - Sends the event through the ingest HTTP API (O(ingest_url) + O(ingest_path)), or, without O(ingest_url),
    publishes it straight to NATS on O(subject) with the event id as C(Nats-Msg-Id) (the fallback, named in
    RV(path)). HTTP 200, 400 and 503 are answers for the playbook to judge; another status or no answer fails.
  - An event not accepted (not HTTP 200) or not stored by O(expected_stream) ends the run there, with
    RV(accepted=false).
  - Then, with O(row), waits for its database row (bounded by O(stall_timeout)) and compares it with the event
    (RV(row_mismatches)); finds the event in O(stream) (RV(in_stream)); then waits until the new stream's
    O(consumers) (none for a group nobody reads yet) processed it (as M(athlete_ally.nats.consumer_drain) does). After the cut-over (O(expected_stream) is
    O(stream)) the wait ends once the ack floor passes the event's own sequence (one reading); before it the event
    reaches the new stream through a source, with no known sequence, so the row comes first, then a full drain
    seen on O(stable_polls) polls.
  - After the cut-over it also sums O(metric) (when given) with O(metric_labels) in the service's /metrics text at
    O(metrics_url) (as the filter P(athlete_ally.nats.prom_sum#filter)) and reads the migration state
    (as M(athlete_ally.nats.migration_state)) for the legacy stream's subjects and last sequence.
  - A wait that runs out fails with one line naming what was awaited and the last state seen; the evidence
    gathered so far is in the failed result.
extends_documentation_fragment:
  - athlete_ally.nats.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Sends nothing and waits for nothing; reports the path it would use.
  diff_mode:
    support: none
    details: A test event has no before and after to compare.
  platform:
    platforms: posix
options:
  event:
    description: The event to send (the JSON body), without its id.
    type: dict
    required: true
  event_id:
    description: The event's id; set in the event under O(event_id_field), and the row is looked up by it.
    type: str
    required: true
  event_id_field:
    description: Key of the id in the event (the inventory's C(migration.service_contract.event_id_field)).
    type: str
    default: eventId
  reply:
    description:
      - Fields of the front door's JSON answer (the inventory's C(migration.service_contract.reply)) -
        C(stream_field), C(seq_field) and optionally C(duplicate_field). Missing ones are listed in RV(reply_errors).
    type: dict
    default: {stream_field: stream, seq_field: seq}
  ingest_url:
    description:
      - Base URL of the ingest HTTP API. Empty or unset, the event is published straight to NATS on O(subject).
    type: str
  ingest_path:
    description: Path of the API the event is posted to (the group's C(verify.path)).
    type: str
    default: ''
  subject:
    description:
      - Subject of the event (the group's C(verify.subject)). The fallback publish goes there (required without
        O(ingest_url)), and the event is looked for on it in O(stream).
    type: str
  http_timeout:
    description: Seconds one HTTP request (the POST, the metrics read) may take.
    type: int
    default: 30
  expected_stream:
    description: The stream that must store the event now (the legacy stream before the cut-over).
    type: str
    required: true
  stream:
    description: The group's new stream, whose consumers must process the event.
    type: str
    required: true
  consumers:
    description: Durable names of the new stream's consumers that must process it (none for a group nobody reads).
    type: list
    elements: str
    default: []
  drain_timeout:
    description: Longest wait for each consumer (duration such as V(120s), or seconds).
    type: raw
    default: 300s
  stall_timeout:
    description:
      - Longest wait for the database row, and how long a consumer's ack floor may stand still while work is
        pending (duration or seconds).
    type: raw
    default: 60s
  stable_polls:
    description: Polls in a row on which the full drain must hold (before the cut-over).
    type: int
    default: 2
  poll_interval:
    description: Time between consumer polls of the full drain (before the cut-over); after it, 250 ms.
    type: raw
    default: 1s
  row:
    description:
      - The row the service writes for the event (the group's C(verify.row), docs/SERVICE_CONTRACT.md) -
        C(table), C(key_column) (holds the event id), C(match) (column -> event field, compared),
        optionally C(check) (an SQL predicate that must hold on the row). Unset, no row is read.
    type: dict
  db_host:
    description: Database host.
    type: str
    required: true
  db_port:
    description: Database port.
    type: int
    default: 5432
  db_user:
    description: Database user.
    type: str
    required: true
  db_password:
    description: Database password (else libpq's E(PGPASSWORD) or C(~/.pgpass)). Never logged.
    type: str
  db_name:
    description: Database name.
    type: str
    required: true
  metrics_url:
    description: The /metrics URL of the deployment that processes the event (read after the cut-over).
    type: str
  metric:
    description: The per-stream metric summed after the cut-over (the group's C(verify.metric.name)); unset, none.
    type: str
  metric_labels:
    description: Labels the metric's samples must carry (a value may be a list, any of them).
    type: dict
    default: {}
  legacy_stream:
    description: The legacy stream, read after the cut-over.
    type: str
  groups:
    description: The subject groups as M(athlete_ally.nats.migration_state) takes them (for the journal's cut-over seq).
    type: list
    elements: dict
    default: []
requirements:
  - psycopg2
notes:
  - Every input is read before anything is sent; the row query is parameterised (the event id is never part of
    the SQL text).
seealso:
  - module: athlete_ally.nats.consumer_drain
  - module: athlete_ally.nats.migration_state
"""

EXAMPLES = r"""
- name: Verification event after the cut-over (runbook Step 2.8/2.9)
  athlete_ally.nats.migration_verify:
    event: "{{ group.verify.payload_after }}"
    event_id: migration-verify-p2-after-20251001T120000
    ingest_url: https://prod.athleteally.com
    ingest_path: "{{ group.verify.path }}"
    subject: "{{ group.verify.subject }}"
    reply: "{{ migration.service_contract.reply }}"
    event_id_field: "{{ migration.service_contract.event_id_field }}"
    expected_stream: "{{ group.stream }}"
    stream: "{{ group.stream }}"
    consumers: "{{ group.consumers | map(attribute='name') | list }}"
    row: "{{ group.verify.row }}"
    db_host: prod-athlete-db
    db_user: migration_ro
    db_password: "{{ vault_migration_db_password }}"
    db_name: athlete_ally
    metrics_url: http://prod-normalize:9464/metrics
    metric: "{{ group.verify.metric.name }}"
    metric_labels: "{{ group.verify.metric.labels | combine({'stream': group.stream}) }}"
    legacy_stream: ATHLETE_ALLY_EVENTS
    groups: "{{ migration.groups }}"
  register: verify

- name: Stored by the new stream and processed
  ansible.builtin.assert:
    that:
      - verify.status == 200 and verify.ack.stream == group.stream
      - verify.rows | length == 1 and verify.row_mismatches == [] and verify.metric > 0
"""

RETURN = r"""
event_id:
  description: The event's id.
  returned: always
  type: str
event:
  description: The event as sent (with its id).
  returned: success
  type: dict
path:
  description: How it was sent, V(ingest API /api/v1/...) or V(direct NATS publish (fallback)).
  returned: always
  type: str
status:
  description: HTTP status of the ingest API (200 for the fallback publish).
  returned: success
  type: int
response:
  description: The answer as received (the ingest API's JSON, or the publish ack).
  returned: success
  type: raw
ack:
  description: C(stream) and C(seq) (and C(duplicate)) read from the answer's O(reply) fields; null where absent.
  returned: success
  type: dict
reply_errors:
  description: One line per O(reply) field the front door's answer (HTTP 200) lacks.
  returned: success
  type: list
  elements: str
in_stream:
  description: Where the event was found in O(stream) (C(stream), C(seq), C(subject)); null when not looked for.
  returned: success
  type: dict
accepted:
  description: HTTP 200 and stored by O(expected_stream); when false nothing after the send ran.
  returned: success
  type: bool
after:
  description: Whether this is the verification after the cut-over (O(expected_stream) == O(stream)).
  returned: success
  type: bool
rows:
  description: The event's rows in O(row) C(table) (one expected).
  returned: success
  type: list
  elements: dict
row:
  description: The first row (its O(row) C(match) columns, C(check_ok) with a C(check)), or null.
  returned: success
  type: dict
row_mismatches:
  description: One line per O(row) C(match) column that differs from the event, and a failed C(check).
  returned: success
  type: list
  elements: str
processed:
  description:
    - Per consumer, its drain result as M(athlete_ally.nats.consumer_drain) returns it (C(consumer), C(drained),
      C(until_stream_seq), C(initial), C(final) with C(delivered.consumer_seq), C(elapsed), C(polls), C(poll_errors)).
  returned: success
  type: list
  elements: dict
metric:
  description: Sum of O(metric) with O(metric_labels) after the cut-over; null before it.
  returned: success
  type: float
metric_labels:
  description: The labels the metric was summed with.
  returned: success
  type: dict
migration:
  description:
    - After the cut-over, the migration state as M(athlete_ally.nats.migration_state) returns it (C(legacy) with
      C(exists), C(subjects), C(last_seq); C(groups) keyed by phase with C(journal.cutover_seq)); null before it.
  returned: success
  type: dict
waited:
  description: Seconds waited for the row (C(row)) and for the consumers (C(processed)).
  returned: success
  type: dict
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, verify
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        event=dict(type="dict", required=True),
        event_id=dict(type="str", required=True),
        event_id_field=dict(type="str", default="eventId"),
        ingest_url=dict(type="str"),
        ingest_path=dict(type="str", default=""),
        subject=dict(type="str"),
        http_timeout=dict(type="int", default=30),
        expected_stream=dict(type="str", required=True),
        stream=dict(type="str", required=True),
        consumers=dict(type="list", elements="str", default=[]),
        drain_timeout=durations.duration_option(default="300s"),
        stall_timeout=durations.duration_option(default="60s"),
        stable_polls=dict(type="int", default=2),
        poll_interval=durations.duration_option(default="1s"),
        row=dict(type="dict"),
        reply=dict(type="dict", default=dict(stream_field="stream", seq_field="seq")),
        db_host=dict(type="str", required=True),
        db_port=dict(type="int", default=5432),
        db_user=dict(type="str", required=True),
        db_password=dict(type="str", no_log=True),
        db_name=dict(type="str", required=True),
        metrics_url=dict(type="str"),
        metric=dict(type="str"),
        metric_labels=dict(type="dict", default={}),
        legacy_stream=dict(type="str"),
        groups=dict(type="list", elements="dict", default=[]),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=True)
    run_module(module, verify.run)


if __name__ == "__main__":
    main()
