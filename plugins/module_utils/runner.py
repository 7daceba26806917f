# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Runs a module's action with a connected client and turns every failure into one line."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.athlete_ally.nats.plugins.module_utils.args_common import module_kwargs
from ansible_collections.athlete_ally.nats.plugins.module_utils.client import (
    HAS_NATS, NATS_IMPORT_ERROR, JetStreamClient, JetStreamError, summarize_warnings)

MAX_RETRY_WARNINGS = 10


def build_module(argument_spec, **kwargs):
    """AnsibleModule with the shared connection options added to ``argument_spec``."""
    params = module_kwargs(argument_spec)
    for key in ("mutually_exclusive", "required_together"):
        params[key] = params[key] + kwargs.pop(key, [])
    params.update(kwargs)
    return AnsibleModule(**params)


def run_module(module, action):
    """Connect, call ``action(module, js) -> dict``, exit with its result or fail with one line."""
    if not HAS_NATS:
        module.fail_json(msg=missing_required_lib("nats-py"), exception=str(NATS_IMPORT_ERROR))
    js = JetStreamClient(module.params)
    try:
        with js:
            result = action(module, js)
    except JetStreamError as exc:
        warn_retries(module, js)
        module.fail_json(msg=str(exc), **exc.result)
    except Exception as exc:  # a bug of ours: still one line, the trace only with -vvv
        warn_retries(module, js)
        module.fail_json(msg="unexpected %s: %s" % (exc.__class__.__name__, exc),
                         exception=traceback.format_exc())
    warn_retries(module, js)
    module.exit_json(**result)


def warn_retries(module, js):
    """The client's retry lines as task warnings: identical ones once, at most MAX_RETRY_WARNINGS."""
    for line in summarize_warnings(js.warnings, cap=MAX_RETRY_WARNINGS):
        module.warn(line)
