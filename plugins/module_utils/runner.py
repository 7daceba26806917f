# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Runs a module's action with a connected client and turns every failure into one line."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.athlete_ally.nats.plugins.module_utils.args_common import module_kwargs
from ansible_collections.athlete_ally.nats.plugins.module_utils.client import (
    HAS_NATS, NATS_IMPORT_ERROR, JetStreamClient, JetStreamError)


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
    try:
        with JetStreamClient(module.params) as js:
            result = action(module, js)
    except JetStreamError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except Exception as exc:  # a bug of ours: still one line, the trace only with -vvv
        module.fail_json(msg="unexpected %s: %s" % (exc.__class__.__name__, exc),
                         exception=traceback.format_exc())
    module.exit_json(**result)
