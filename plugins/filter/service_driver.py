# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Filters of the service_driver role: what its lab and kubernetes drivers compute, so the task files only say
what is done and this logic has unit tests (tests/unit/test_service_driver_filters.py).

Environment values follow one rule in both drivers: a value is text; a non-string (true, 3, a list) is sent as
its JSON text ("true", "3"), and null means "remove the variable".
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.athlete_ally.nats.plugins.module_utils import env_file
from ansible_collections.athlete_ally.nats.plugins.module_utils.env_file import env_text

START_MARKER = "=== service starting"  # what lab/services/common.py logs when a service starts


# ---- env files of the lab services: the format is module_utils/env_file.py's, shared with the services ---------------

def env_file_parse(text):
    """An env file's text as a dict (the format: module_utils/env_file.py)."""
    try:
        return env_file.parse(text)
    except ValueError as exc:
        raise AnsibleFilterError("env_file_parse: %s" % exc)


def env_merge(current, changes):
    """``current`` with ``changes`` applied: a null value removes the variable, others are set as text."""
    out = dict(current or {})
    for key, value in (changes or {}).items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = env_text(value)
    return out


def env_file_render(env, service):
    """The env file of ``service``: a header comment, then KEY=VALUE lines sorted by key (case-insensitively);
    refuses what would not read back as the same variables (module_utils/env_file.py)."""
    try:
        return env_file.render(env, service)
    except ValueError as exc:
        raise AnsibleFilterError("env_file_render: %s" % exc)


# ---- logs of the lab services ---------------------------------------------------------------------------------------

def lines_since_start(text, count, marker=START_MARKER):
    """The last ``count`` lines (0: all) of ``text`` from the last line containing ``marker`` on (from the first
    line if none does).

    A service log file spans restarts; like ``kubectl logs`` after a rollout, only the current run is wanted.
    """
    lines = (text or "").splitlines()
    start = 0
    for index, line in enumerate(lines):
        if marker in line:
            start = index
    return lines[start:][-int(count):]


# ---- Kubernetes deployments -----------------------------------------------------------------------------------------

def k8s_container_name(service, containers=None, container=None):
    """The container the driver manages in deployment ``service``: ``containers[service]`` (the per-deployment
    inventory map) if it names one, else ``container`` (inventory-wide), else the deployment's own name."""
    if containers and service in containers:
        return containers[service]
    return container if container else service


def k8s_container(deployment, name):
    """The container spec called ``name`` of a Deployment object, or None (also when there is no deployment)."""
    spec = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    return next((c for c in spec.get("containers") or [] if c.get("name") == name), None)


def k8s_env(container):
    """A container's env as name -> value. An entry set through valueFrom (a secret, a field) maps to None; one
    with neither value nor valueFrom is the empty string (the API omits empty values)."""
    env = {}
    for entry in (container or {}).get("env") or []:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            env[entry["name"]] = None if "valueFrom" in entry else ""
    return env


def env_changes(current, wanted):
    """Names in ``wanted`` whose value differs from ``current`` (null: the variable is set and would go)."""
    current = current or {}
    changed = []
    for key, value in (wanted or {}).items():
        if value is None:
            if key in current:
                changed.append(key)
        elif key not in current or current[key] != env_text(value):
            changed.append(key)
    return changed


def k8s_env_patch(current, wanted):
    """Strategic-merge env entries (like ``kubectl set env``) for every variable in ``wanted``.

    Null removes a variable that is set (``$patch: delete``) and sends nothing for one that is not. A variable now
    set through valueFrom gets ``valueFrom: null`` as well, or the API would refuse both set on one entry.
    """
    current = current or {}
    patch = []
    for key, value in (wanted or {}).items():
        if value is None:
            if key in current:
                patch.append({"name": key, "$patch": "delete"})
            continue
        item = {"name": key, "value": env_text(value)}
        if key in current and current[key] is None:
            item["valueFrom"] = None
        patch.append(item)
    return patch


def k8s_container_patch(deployment, namespace, container, **fields):
    """A strategic-merge patch of Deployment ``deployment`` that sets ``fields`` (env, image) on one container of
    its pod template and touches nothing else; changing the pod template is what rolls the deployment."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment, "namespace": namespace},
        "spec": {"template": {"spec": {"containers": [dict({"name": container}, **fields)]}}},
    }


def _count(obj, path, default):
    for key in path[:-1]:
        obj = (obj or {}).get(key) or {}
    value = (obj or {}).get(path[-1], default)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def k8s_rollout_done(deployment):
    """Whether a Deployment has finished rolling out, like ``kubectl rollout status``: the controller observed
    the latest generation, every replica runs the new template (none of the old left) and all are available."""
    wanted = _count(deployment, ("spec", "replicas"), 1)
    return (_count(deployment, ("status", "observedGeneration"), 0) >= _count(deployment, ("metadata", "generation"), 0)
            and _count(deployment, ("status", "updatedReplicas"), 0) == wanted
            and _count(deployment, ("status", "replicas"), 0) == wanted
            and _count(deployment, ("status", "availableReplicas"), 0) == wanted)


class FilterModule(object):
    def filters(self):
        return {
            "env_file_parse": env_file_parse,
            "env_file_render": env_file_render,
            "env_merge": env_merge,
            "env_changes": env_changes,
            "lines_since_start": lines_since_start,
            "k8s_container_name": k8s_container_name,
            "k8s_container": k8s_container,
            "k8s_env": k8s_env,
            "k8s_env_patch": k8s_env_patch,
            "k8s_container_patch": k8s_container_patch,
            "k8s_rollout_done": k8s_rollout_done,
        }
