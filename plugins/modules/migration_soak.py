#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_soak
short_description: Watch a migration's soak window and stop at the first alert
version_added: "0.2.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - The runbook's "Pause - monitor for alerts" as one task, polling on a clock every O(poll) for O(seconds).
  - With O(prometheus_url), every poll reads Prometheus' C(/api/v1/alerts) and fails at once, with one line naming
    the alert and its labels, when an alert whose labels match O(alert_labels) is firing (the migration's rules,
    C(monitoring/prometheus/migration-rules.yml), decide thresholds and durations). O(status_queries) give one status
    line per poll (consumer lag, error rate, stored messages per minute). Three failed reads of Prometheus in a
    row fail the window.
  - It fails closed. Before the window it refuses, in one line, when O(rule_group) is not loaded in Prometheus
    (C(/api/v1/rules)), lacks one of O(alerts) or has a rule in error, or when one of O(required_series) has no
    series (those marked C(if_traffic) only once O(traffic_query) is above 0). A failed read in the window's last
    three polls fails it; an alert pending when the window ends is polled on until it fires or resolves, at most
    its rule's C(for:) plus two polls (and O(pending_wait)).
  - Without O(prometheus_url), only consumer lag is watched, read from JetStream; a consumer over O(max_pending)
    for O(max_pending_for) fails the window. A consumer read that fails during a leader election counts as unknown
    for that poll, not as an alert.
extends_documentation_fragment:
  - athlete_ally.nats.connection
options:
  consumers:
    description: Consumers to watch, as C(STREAM/durable) (status line; lag alert without Prometheus).
    type: list
    elements: str
    default: []
  prometheus_url:
    description: Prometheus base URL (C(http://host:9090)); without it only the lag is watched, from JetStream.
    type: str
  alert_labels:
    description: Labels a firing alert must carry to stop the window.
    type: dict
    default: {runbook: phase2-migration}
  status_queries:
    description: With O(prometheus_url), the status line's PromQL - C(lag) (per consumer), C(lag_labels) (its stream
      and consumer labels), C(error_rate), C(stored_per_min) - from the filter
      C(athlete_ally.nats.migration_queries(..., 'status')).
    type: dict
    default: {}
  rule_group:
    description: The rule group that must be loaded in Prometheus before the window.
    type: str
    default: phase2-migration
  alerts:
    description: Alert names the rule group must hold (C(migration_queries(..., 'required')).alerts).
    type: list
    elements: str
    default: []
  required_series:
    description: Series the rules read, as C({what, selector, if_traffic}); the window refuses when one is absent.
    type: list
    elements: dict
    default: []
  traffic_query:
    description: PromQL above 0 when the app's streams stored messages recently (makes C(if_traffic) series required).
    type: str
  pending_wait:
    description: At most this long past the window for an alert still pending at its end.
    type: raw
    default: 900
  progress_file:
    description: Append each status line to this file as it is polled (C(tail -f) it during a long window).
    type: path
  seconds:
    description: Length of the window (seconds, or a duration such as V(30m)).
    type: raw
    required: true
  poll:
    description: Time between polls.
    type: raw
    default: 30
  max_pending:
    description: Without Prometheus, pending messages above which a consumer counts as lagging.
    type: int
    default: 100
  max_pending_for:
    description: Without Prometheus, how long a consumer may lag before the soak stops (runbook 10 minutes).
    type: raw
    default: 600
attributes:
  check_mode:
    support: none
    description: It only watches; run it with O(ignore:check_mode=false) or skip it in check mode.
  diff_mode:
    support: none
    description: Nothing to compare.
  platform:
    support: full
    platforms: posix
    description: Any host that reaches Prometheus (and NATS without it).
"""

EXAMPLES = r"""
- name: Soak window of phase 2 (60 minutes), stopped by any firing migration alert
  athlete_ally.nats.migration_soak:
    consumers: [AA_CORE_HOT/normalize-hrv-durable]
    prometheus_url: http://prometheus.monitoring:9090
    seconds: 60m
    poll: 30
"""

RETURN = r"""
seconds:
  description: How long the window lasted.
  returned: success
  type: float
source:
  description: Where the window looked, V(prometheus) or V(jetstream).
  returned: success
  type: str
polls:
  description: One entry per poll (C(elapsed), C(lag) per consumer, C(error_rate), C(stored_per_min), C(firing),
    C(pending)).
  returned: always
  type: list
  elements: dict
lines:
  description: The polls as status lines.
  returned: always
  type: list
  elements: str
alerts:
  description: The firing alerts that stopped the window, as Prometheus returned them.
  returned: failure
  type: list
  elements: dict
"""

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, soak
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module


def argument_spec():
    """This module's own options; runner.build_module adds the shared connection options (args_common.py)."""
    return dict(
        consumers=dict(type="list", elements="str", default=[]),
        prometheus_url=dict(type="str"),
        alert_labels=dict(type="dict", default={"runbook": "phase2-migration"}),
        status_queries=dict(type="dict", default={}),
        rule_group=dict(type="str", default="phase2-migration"),
        alerts=dict(type="list", elements="str", default=[]),
        required_series=dict(type="list", elements="dict", default=[]),
        traffic_query=dict(type="str"),
        pending_wait=durations.duration_option(default=900),
        progress_file=dict(type="path"),
        seconds=durations.duration_option(required=True),
        poll=durations.duration_option(default=30),
        max_pending=dict(type="int", default=100),
        max_pending_for=durations.duration_option(default=600),
    )


def main():
    module = build_module(argument_spec(), supports_check_mode=False)
    run_module(module, soak.run, seconds=("seconds", "poll", "max_pending_for", "pending_wait"))


if __name__ == "__main__":
    main()
