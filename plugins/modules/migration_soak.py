#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_soak
short_description: Watch a migration's soak window and stop at the first alert condition
version_added: "0.2.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - The runbook's "Pause - monitor for alerts" as one task. Polls, on a clock, every O(poll) for O(seconds),
    the pending count of each of O(consumers) and the counters of O(metric) at O(metrics_url), and fails at once,
    with one line naming the alert, when a consumer stays over O(max_pending) for O(max_pending_for) or the error
    rate over the window passes O(max_error_rate).
  - A consumer read that fails during a leader election counts as unknown for that poll, not as an alert.
extends_documentation_fragment:
  - athlete_ally.nats.connection
options:
  consumers:
    description: Consumers to watch, as C(STREAM/durable).
    type: list
    elements: str
    default: []
  metrics_url:
    description: The service's Prometheus text endpoint; without it only the lag is watched.
    type: str
  metric:
    description: Counter with a C(result) label, summed over its series.
    type: str
    default: normalize_hrv_messages_total
  error_results:
    description: Values of the C(result) label that count as errors.
    type: list
    elements: str
    default: [retry, dlq]
  seconds:
    description: Length of the window (seconds, or a duration such as V(30m)).
    type: raw
    required: true
  poll:
    description: Time between polls.
    type: raw
    default: 30
  max_pending:
    description: Pending messages above which a consumer counts as lagging (runbook alert "consumer lag").
    type: int
    default: 100
  max_pending_for:
    description: How long a consumer may lag before the soak stops (runbook 10 minutes).
    type: raw
    default: 600
  max_error_rate:
    description: Error rate over the window (errors / all) above which the soak stops (runbook 10 %).
    type: float
    default: 0.1
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
    description: Any host that reaches NATS and the metrics endpoint.
"""

EXAMPLES = r"""
- name: Soak window of phase 2 (60 minutes)
  athlete_ally.nats.migration_soak:
    consumers: [AA_CORE_HOT/normalize-hrv-durable]
    metrics_url: http://normalize-service:9464/metrics
    seconds: 60m
    poll: 30
    max_pending: 100
    max_pending_for: 10m
    max_error_rate: 0.1
"""

RETURN = r"""
seconds:
  description: How long the window lasted.
  returned: success
  type: float
polls:
  description: One entry per poll (C(elapsed), C(pending) per consumer, C(processed) and C(errors) since the first).
  returned: always
  type: list
  elements: dict
lines:
  description: The polls as status lines.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.urls import open_url

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations
from ansible_collections.athlete_ally.nats.plugins.module_utils.client import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import build_module, run_module
from ansible_collections.athlete_ally.nats.plugins.module_utils.soak import Soak


def action(module, js):
    url = module.params["metrics_url"]

    def fetch():
        if not url:
            return None
        try:
            return open_url(url, timeout=10).read().decode("utf-8", "replace")
        except Exception as exc:  # urllib raises many types; one line is what the operator needs
            raise JetStreamError("cannot read the service metrics at %s: %s; check metrics_url and the service"
                                 % (url, exc))

    return Soak(js, module.params, fetch).run()


def main():
    module = build_module(dict(
        consumers=dict(type="list", elements="str", default=[]),
        metrics_url=dict(type="str"),
        metric=dict(type="str", default="normalize_hrv_messages_total"),
        error_results=dict(type="list", elements="str", default=["retry", "dlq"]),
        seconds=durations.duration_option(required=True),
        poll=durations.duration_option(default=30),
        max_pending=dict(type="int", default=100),
        max_pending_for=durations.duration_option(default=600),
        max_error_rate=dict(type="float", default=0.1),
    ), supports_check_mode=False)
    durations.params_to_seconds(module, "seconds", "poll", "max_pending_for")
    run_module(module, action)


if __name__ == "__main__":
    main()
