"""Run tasks through ansible-playbook for real and read back each task's result."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"


class PlaybookResult(object):
    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data
        self.tasks = []
        for play in (data or {}).get("plays", []):
            for task in play.get("tasks", []):
                res = next(iter(task.get("hosts", {}).values()), {})
                self.tasks.append(dict(res, _name=task["task"]["name"]))
        self.stats = next(iter((data or {}).get("stats", {}).values()), {})

    def task(self, name):
        for t in self.tasks:
            if t["_name"] == name:
                return t
        raise KeyError("no task %r in %s" % (name, [t["_name"] for t in self.tasks]))

    @property
    def last(self):
        return self.tasks[-1]

    @property
    def changed(self):
        return self.stats.get("changed", 0)


def playbook_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": str(BIN / "python"),
        "PATH": "%s:%s" % (BIN, env.get("PATH", "")),
    })
    env.update(extra or {})
    return env


def run_playbook_file(path, args=(), env=None, cwd=REPO, timeout=600):
    cmd = [str(BIN / "ansible-playbook"), str(path)] + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=playbook_env(env), cwd=str(cwd),
                          timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else None
    except ValueError:
        data = None
    return PlaybookResult(proc, data)


def run_tasks(tasks, servers=None, check=False, diff=False, env=None, args=(), defaults=None):
    """One play on localhost with ``tasks``; the connection is set once through module_defaults."""
    group = dict(defaults or {})
    if servers:
        group.setdefault("servers", servers if isinstance(servers, list) else [servers])
    play = {
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "module_defaults": {"group/athlete_ally.nats.jetstream": group},
        "tasks": tasks,
    }
    extra = list(args)
    if check:
        extra.append("--check")
    if diff:
        extra.append("--diff")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "play.yml"
        path.write_text(yaml.safe_dump([play], sort_keys=False))
        return run_playbook_file(path, ["-i", "localhost,"] + extra, env=env)
