# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""What every module that talks to NATS is made of: ``build_module(argument_spec(), ...)`` adds the shared
connection options (args_common.py, documented by doc_fragments/connection.py) to the module's own, and
``run_module(module, <module_utils>.run)`` runs its logic with a connected client, every failure one line."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations
from ansible_collections.athlete_ally.nats.plugins.module_utils.args_common import module_kwargs
from ansible_collections.athlete_ally.nats.plugins.module_utils.connection import HAS_NATS, NATS_IMPORT_ERROR
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import JetStreamClient
from ansible_collections.athlete_ally.nats.plugins.module_utils.retry import summarize_warnings

MAX_RETRY_WARNINGS = 10


def build_module(argument_spec, **kwargs):
    """AnsibleModule with the shared connection options added to ``argument_spec``."""
    params = module_kwargs(argument_spec)
    for key in ("mutually_exclusive", "required_together"):
        params[key] = params[key] + kwargs.pop(key, [])
    params.update(kwargs)
    return AnsibleModule(**params)


def run_module(module, action, seconds=(), check=None):
    """Connect, call ``action(module, js) -> dict``, exit with its result or fail with one line.

    Before connecting: the duration options named in ``seconds`` become float seconds (for logic that waits), and
    ``check(params)`` may refuse the options with a JetStreamError (what the argument spec cannot say)."""
    durations.params_to_seconds(module, *seconds)
    if not HAS_NATS:
        module.fail_json(msg=missing_required_lib("nats-py"), exception=str(NATS_IMPORT_ERROR))
    try:
        if check is not None:
            check(module.params)
        js = JetStreamClient(module.params)  # reads the connection's durations: a wrong one is a one-line failure
    except JetStreamError as exc:
        module.fail_json(msg=str(exc), **exc.result)
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
