# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""run_counts: tasks, module runs by module and wall time of each playbook, for the benchmarks and the rehearsal.

An ordinary callback plugin (ANSIBLE_CALLBACK_PLUGINS=<repo>/bench/callback_plugins, ANSIBLE_CALLBACKS_ENABLED=
run_counts): nothing in the interpreter or in ansible-core is changed, so what it counts is what any ansible-playbook
run does. bench/counts.py says how to read the figures.
"""

from __future__ import annotations

DOCUMENTATION = """
name: run_counts
type: aggregate
short_description: tasks, module runs and wall time per playbook
description:
  - At the end of each playbook appends the tasks run, the module runs (by module) and the wall time as one JSON
    line to O(output) when it is set, else prints them on one line (a JSON stdout callback stays parseable).
  - A module run is a result that carries the module's C(invocation) (AnsibleModule adds it to every exit), one per
    task, loop item or C(until) retry. Results hidden by C(no_log) lose it; those count as module runs unless their
    action runs on the controller only (debug, set_fact, include_*, ...).
options:
  output:
    description: File the per-playbook JSON lines are appended to.
    env:
      - name: AA_RUN_COUNTS_FILE
    type: path
"""

import json
import os
import time
from collections import Counter

from ansible.plugins.callback import CallbackBase

# Actions that never run a module: what a no_log result of theirs (no invocation left to see) must not count as one.
CONTROLLER_ONLY = frozenset(
    "ansible.builtin." + name for name in (
        "debug", "set_fact", "assert", "fail", "meta", "include_tasks", "import_tasks", "include_role", "import_role",
        "include_vars", "pause", "set_stats", "add_host", "group_by", "validate_argument_spec"))


def action_name(task):
    """The task's module as Ansible resolved it (FQCN), falling back to what the task wrote."""
    return getattr(task, "resolved_action", None) or task.action


def ran_module(task, result):
    """Whether ``result`` (one task, loop item or retry result) came from a module run."""
    if "invocation" in result:
        return True
    return "censored" in result and action_name(task) not in CONTROLLER_ONLY


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "run_counts"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.playbook = None
        self.started = None
        self.tasks = Counter()  # ok / failed / skipped / unreachable per host and task
        self.modules = Counter()

    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.basename(playbook._file_name)  # pylint: disable=protected-access
        self.started = time.monotonic()

    def _module_runs(self, result):
        data = result.result
        items = data.get("results") if isinstance(data.get("results"), list) else None
        if items is None:
            hits = int(ran_module(result.task, data))
        else:  # a loop: one module run per item that ran one
            hits = sum(ran_module(result.task, item) for item in items if isinstance(item, dict))
        if hits:
            self.modules[action_name(result.task)] += hits

    def _task_end(self, result, status):
        self.tasks[status] += 1
        self._module_runs(result)

    def v2_runner_on_ok(self, result):
        self._task_end(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task_end(result, "failed")

    def v2_runner_on_skipped(self, result):
        self.tasks["skipped"] += 1  # a skipped task ran no module, and a skipped loop's items neither

    def v2_runner_on_unreachable(self, result):
        self.tasks["unreachable"] += 1

    def v2_runner_retry(self, result):
        # each failed attempt of an until loop is a module run of its own; the last one reaches on_ok/on_failed
        if ran_module(result.task, result.result):
            self.modules[action_name(result.task)] += 1

    def v2_playbook_on_stats(self, stats):
        counts = {
            "playbook": self.playbook,
            "seconds": round(time.monotonic() - self.started, 2) if self.started is not None else None,
            "tasks": sum(self.tasks.values()),
            "skipped": self.tasks["skipped"],
            "module_runs": sum(self.modules.values()),
            "modules": dict(self.modules.most_common()),
        }
        output = self.get_option("output")
        if output:
            with open(output, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(counts, sort_keys=True) + "\n")
            return
        self._display.display("RUN COUNTS %s: %d tasks (%d skipped), %d module runs (%s), %.1f s" % (
            counts["playbook"], counts["tasks"], counts["skipped"], counts["module_runs"],
            ", ".join("%s %d" % (name.rsplit(".", 1)[-1], n) for name, n in self.modules.most_common()) or "none",
            counts["seconds"] or 0.0))
