"""lab/pyhooks/aa_payload_cache.py through real ansible-playbook runs: the module_utils walk is skipped only while
every file it read is unchanged, and what runs is always the current source."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
# recursive_finder prints this (at -vvvvv) for every file its walk puts into the payload
WALKED = "Including module_utils file ansible_collections/aa_probe/cache/plugins/module_utils/value.py"

MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aa_probe.cache.plugins.module_utils.value import VALUE


def main():
    AnsibleModule(argument_spec={}).exit_json(changed=False, value=VALUE)


if __name__ == "__main__":
    main()
'''
PLAY = '''- hosts: localhost
  gather_facts: false
  tasks:
    - name: probe
      aa_probe.cache.probe:
      register: probe
    - name: show
      ansible.builtin.debug:
        msg: "VALUE={{ probe.value }}"
'''


@pytest.fixture
def probe(tmp_path):
    coll = tmp_path / "collections" / "ansible_collections" / "aa_probe" / "cache"
    (coll / "plugins" / "modules").mkdir(parents=True)
    (coll / "plugins" / "module_utils").mkdir(parents=True)
    (coll / "galaxy.yml").write_text("namespace: aa_probe\nname: cache\nversion: 1.0.0\n")
    (coll / "plugins" / "modules" / "probe.py").write_text(MODULE)
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")  # none of the repo's settings
    value = coll / "plugins" / "module_utils" / "value.py"

    def run(source=None, **env):
        if source is not None:
            value.write_text(source)
        full_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
                        AA_PAYLOAD_CACHE_DIR=str(tmp_path / "cache"), ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
                        ANSIBLE_NOCOLOR="1", **env)
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvvvv",
                               "-e", json.dumps({"ansible_python_interpreter": str(BIN / "python")}),
                               str(tmp_path / "play.yml")],
                              env=full_env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        shown = [line for line in proc.stdout.splitlines() if "VALUE=" in line]
        return shown[-1].split("VALUE=")[1].strip('" '), WALKED in proc.stdout

    return run, tmp_path / "cache"


def test_second_process_skips_the_walk_and_an_edit_is_picked_up(probe):
    run, cache = probe
    assert run('VALUE = "one"\n') == ("one", True)
    assert len(list(cache.iterdir())) == 1  # the probe's payload (debug is an action plugin: no payload)
    assert run() == ("one", False)  # another ansible-playbook process: no walk, same result
    assert run('VALUE = "two"\n') == ("two", True)  # the module_util changed: walked again, the new code runs
    assert run() == ("two", False)


def test_turned_off_it_walks_every_time(probe):
    run, cache = probe
    assert run('VALUE = "one"\n', AA_ANSIBALLZ_CACHE="0") == ("one", True)
    assert run(AA_ANSIBALLZ_CACHE="0") == ("one", True)
    assert not cache.exists()


def test_an_unreadable_entry_means_a_fresh_walk(probe):
    run, cache = probe
    run('VALUE = "one"\n')
    for entry in cache.iterdir():
        entry.write_bytes(b"not a pickle")
    assert run() == ("one", True)
    assert run() == ("one", False)
