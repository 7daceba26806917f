# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The migration_plan module's logic: the plan checked alone (plan.py) and, with ``live``, against the cluster's
streams, every mistake one line; the digests the go/no-go journal and the staging check compare."""

from __future__ import annotations

from ansible_collections.athlete_ally.nats.plugins.module_utils import plan
from ansible_collections.athlete_ally.nats.plugins.module_utils.runner import run_module


def finish(module, streams=None):
    """The result for ``streams`` (STREAM.LIST's infos; None: the plan alone), or the task failed with every error."""
    p = module.params["plan"]
    errors = plan.plan_errors(p) + (plan.live_errors(p, streams) if streams is not None else [])
    result = dict(changed=False, digest=plan.plan_digest(p), topology_digest=plan.topology_digest(p), errors=errors,
                  groups=plan.group_summary(p, streams))
    if errors:
        module.fail_json(msg="\n".join(errors), **result)
    return result


def run(module):
    """Exit the task with the check's result: without ``live`` no connection is made."""
    if not module.params["live"]:
        module.exit_json(**finish(module))
    run_module(module, lambda m, js: finish(m, js.streams()))
