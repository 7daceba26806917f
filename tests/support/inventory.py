"""An inventory's variables as Ansible renders them at play time (ansible-playbook, as operators run it).

The staging and production `migration` names its topology from the shared file (inventories/migration_topology.yml,
linked into each group_vars/all), so reading migration.yml with a YAML parser gives "{{ migration_topology.* }}"
strings, not the plan; tests that need the plan use rendered()."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import yaml

from lab.ansible_run import REPO, run_playbook_file

TOPOLOGY_FILE = REPO / "inventories" / "migration_topology.yml"


def topology():
    """The shared topology (the `migration_topology` variable), read from its file: plain data, no templates."""
    return yaml.safe_load(TOPOLOGY_FILE.read_text())["migration_topology"]


@functools.lru_cache(maxsize=None)
def _rendered_text(inventory, var, lab_dir):
    # to_yaml, not the JSON callback: JSON would turn soak_seconds' integer keys into strings
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "render", "ansible.builtin.debug": {"msg": "{{ %s | to_yaml }}" % var}}]}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "render.yml"
        path.write_text(yaml.safe_dump(play))
        res = run_playbook_file(path, ["-i", str(REPO / "inventories" / inventory)], env={"AA_LAB_DIR": lab_dir})
    assert res.rc == 0, "rendering %s of inventories/%s failed: %s" % (var, inventory, res.stdout[-2000:])
    return res.task("render")["msg"]


def rendered(inventory, var="migration", lab_dir="/LAB"):
    """``var`` of inventories/<inventory> rendered by ansible-playbook (a fresh copy on each call; the lab's
    lab_dir pinned so the result does not depend on the machine)."""
    return yaml.safe_load(_rendered_text(inventory, var, lab_dir))
