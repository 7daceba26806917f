"""bench/callback_plugins/run_counts.py through a real ansible-playbook run: tasks, skipped tasks and module runs by
module (loop items and until retries each a run of their own, a no_log result still counted, controller-only actions
not), and bench/counts.py reading them back."""

from __future__ import annotations

import subprocess

import yaml

from bench import counts
from lab.ansible_run import BIN, REPO, run_playbook_file

PLAY = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
    {"name": "one stat", "ansible.builtin.stat": {"path": "/"}},
    {"name": "a hidden stat", "ansible.builtin.stat": {"path": "/"}, "no_log": True},
    {"name": "controller only", "ansible.builtin.debug": {"msg": "no module"}},
    {"name": "a hidden fact", "ansible.builtin.set_fact": {"secret": "x"}, "no_log": True},
    {"name": "two items", "ansible.builtin.stat": {"path": "{{ item }}"}, "loop": ["/", "/tmp"]},
    {"name": "three attempts", "ansible.builtin.command": "false", "register": "attempt",
     "until": "attempt.rc == 0", "retries": 2, "delay": 0, "ignore_errors": True},
    {"name": "skipped", "ansible.builtin.stat": {"path": "/"}, "when": False},
]}]


def play(tmp_path):
    path = tmp_path / "counted.yml"
    path.write_text(yaml.safe_dump(PLAY, sort_keys=False))
    return path


def test_counts_tasks_and_module_runs_by_module(tmp_path):
    out = tmp_path / "counts.jsonl"
    for _run in range(2):  # one JSON line per playbook run, appended
        res = run_playbook_file(play(tmp_path), ["-i", "localhost,"], env=counts.callback_env(out, {}))
        assert res.rc == 0, res.stdout[-2000:] + res.stderr[-2000:]
    records = counts.read(out)
    assert [(r["playbook"], r["tasks"], r["skipped"], r["module_runs"]) for r in records] == \
        [("counted.yml", 7, 1, 7)] * 2
    assert records[0]["modules"] == {"ansible.builtin.stat": 4, "ansible.builtin.command": 3}
    total = counts.totals(records)
    assert (total["playbooks"], total["tasks"], total["module_runs"]) == (2, 14, 14)
    assert counts.describe(total) == "tasks 14 (2 skipped), module runs 14: stat 8, command 6"


def test_without_an_output_file_it_prints_one_line(tmp_path):
    env = {key: value for key, value in counts.callback_env(tmp_path / "unused.jsonl").items()
           if key != "AA_RUN_COUNTS_FILE"}
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(play(tmp_path)),
                           "-e", "ansible_python_interpreter=%s" % (BIN / "python")],
                          cwd=str(REPO), env=dict(env, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = [text for text in proc.stdout.splitlines() if text.startswith("RUN COUNTS")]
    assert len(line) == 1 and line[0].startswith(
        "RUN COUNTS counted.yml: 7 tasks (1 skipped), 7 module runs (stat 4, command 3), "), proc.stdout[-2000:]
    assert not (tmp_path / "unused.jsonl").exists()
