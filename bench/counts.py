"""Task and module-run counts of ansible-playbook runs, through the run_counts callback (bench/callback_plugins).

``callback_env(path)`` is the environment that enables the callback and makes it append one JSON line per playbook to
``path``; ``read(path)`` returns those lines, ``totals(records)`` adds them up and ``describe(totals)`` prints them:

    tasks 260 (31 skipped), module runs 60: jetstream_info 14, migration_state 12, ...

A module run is one execution of a module's code on the target (task, loop item or until retry): each costs a
process, the AnsiballZ payload's imports and the module's work. Tasks that only run on the controller (debug,
set_fact, assert, include_*, the lab_service action) are tasks but no module runs.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

CALLBACK_DIR = Path(__file__).resolve().parent / "callback_plugins"
CALLBACK = "run_counts"


def callback_env(path, base=None):
    """``base`` (default os.environ) plus the variables that enable run_counts and point it at ``path``."""
    base = dict(os.environ if base is None else base)
    plugins = [str(CALLBACK_DIR)] + [p for p in base.get("ANSIBLE_CALLBACK_PLUGINS", "").split(os.pathsep) if p]
    enabled = [c for c in base.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c.strip()]
    if CALLBACK not in enabled:
        enabled.append(CALLBACK)
    return dict(base, ANSIBLE_CALLBACK_PLUGINS=os.pathsep.join(plugins), ANSIBLE_CALLBACKS_ENABLED=",".join(enabled),
                AA_RUN_COUNTS_FILE=str(path))


def read(path):
    """The per-playbook records run_counts appended to ``path`` (none if it does not exist). A line cut short (a
    playbook killed while writing it, as the chaos runs do) is left out rather than failing the report."""
    path = Path(path)
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def totals(records):
    """Sum of ``records``: playbooks, tasks, skipped, module_runs, seconds and modules (name -> runs)."""
    modules = Counter()
    for record in records:
        modules.update(record.get("modules") or {})
    return {"playbooks": len(records), "tasks": sum(r["tasks"] for r in records),
            "skipped": sum(r["skipped"] for r in records), "module_runs": sum(modules.values()),
            "seconds": round(sum(r.get("seconds") or 0 for r in records), 1), "modules": dict(modules.most_common())}


def describe(total, per_module=True):
    """One line: tasks (skipped), module runs and, with ``per_module``, the runs of each module."""
    line = "tasks %d (%d skipped), module runs %d" % (total["tasks"], total["skipped"], total["module_runs"])
    if per_module and total["modules"]:
        line += ": " + ", ".join("%s %d" % (name.rsplit(".", 1)[-1], n) for name, n in total["modules"].items())
    return line
