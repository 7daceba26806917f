# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The one connection argument spec every module shares (paired with doc_fragments/connection.py)."""

from __future__ import annotations

import os

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.common.parameters import AnsibleFallbackNotFound

from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import duration_option


def set_env_fallback(*names):
    """env_fallback, but an empty variable counts as unset: an AWX credential injector renders every variable of
    the credential type, empty for inputs left blank, and an empty NATS_TOKEN must not clash with NATS_USER."""
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    raise AnsibleFallbackNotFound


def jetstream_argument_spec():
    """Connection options, with NATS_* environment fallbacks like the nats CLI."""
    return dict(
        servers=dict(type="list", elements="str", default=["nats://127.0.0.1:4222"],
                     fallback=(set_env_fallback, ["NATS_URL"]), aliases=["server_url"]),
        user=dict(type="str", fallback=(set_env_fallback, ["NATS_USER"])),
        password=dict(type="str", no_log=True, fallback=(set_env_fallback, ["NATS_PASSWORD"])),
        token=dict(type="str", no_log=True, fallback=(set_env_fallback, ["NATS_TOKEN"])),
        creds_file=dict(type="path", fallback=(set_env_fallback, ["NATS_CREDS"])),
        nkey_seed=dict(type="str", no_log=True, fallback=(set_env_fallback, ["NATS_NKEY_SEED"])),
        nkey_file=dict(type="path", fallback=(set_env_fallback, ["NATS_NKEY"])),
        tls_ca=dict(type="path", fallback=(set_env_fallback, ["NATS_CA"])),
        tls_cert=dict(type="path", fallback=(set_env_fallback, ["NATS_CERT"])),
        tls_key=dict(type="path", no_log=False, fallback=(set_env_fallback, ["NATS_KEY"])),
        tls_hostname=dict(type="str", fallback=(set_env_fallback, ["NATS_TLS_HOSTNAME"])),
        connect_timeout=duration_option(default=5.0),
        request_timeout=duration_option(default=5.0),
        retry_budget=duration_option(default=30.0, fallback=(env_fallback, ["NATS_RETRY_BUDGET"])),
        domain=dict(type="str", fallback=(env_fallback, ["NATS_JS_DOMAIN"])),
        api_prefix=dict(type="str", fallback=(env_fallback, ["NATS_JS_API_PREFIX"])),
    )


# One authentication per connection (TLS combines with any of them): nats-py would silently pick one.
JETSTREAM_MUTUALLY_EXCLUSIVE = [["domain", "api_prefix"], ["token", "user"], ["token", "creds_file"],
                                ["nkey_seed", "nkey_file"], ["creds_file", "nkey_seed"], ["creds_file", "nkey_file"],
                                ["token", "nkey_seed"], ["token", "nkey_file"]]
JETSTREAM_REQUIRED_TOGETHER = [["user", "password"], ["tls_cert", "tls_key"]]


def module_kwargs(argument_spec):
    """AnsibleModule keyword arguments: the connection spec merged with a module's own."""
    spec = jetstream_argument_spec()
    spec.update(argument_spec)
    return dict(argument_spec=spec, mutually_exclusive=JETSTREAM_MUTUALLY_EXCLUSIVE,
                required_together=JETSTREAM_REQUIRED_TOGETHER)
