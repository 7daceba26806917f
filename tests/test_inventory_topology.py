"""The topology written once (inventories/migration_topology.yml, linked into the staging and production
group_vars/all) and each environment holding only what differs: what Ansible renders is what the inventories
held before, value for value and type for type, both through `-i inventories/<env>` (ansible-playbook, as operators
run it) and through `-i inventories/<env>/hosts.yml` (ansible-inventory, as an AWX inventory source syncs it)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from lab.ansible_run import BIN, REPO, playbook_env
from tests.support.inventory import TOPOLOGY_FILE, rendered, topology

ENVIRONMENTS = ["staging", "production"]
EXPECTED = REPO / "tests" / "data" / "inventories"


def typed(value):
    """``value`` with every scalar and key paired with its type: 1, 1.0, True and "1" are four different values
    here (== alone would take 1 == 1.0 == True)."""
    if isinstance(value, dict):
        return {(type(k).__name__, k): typed(x) for k, x in value.items()}
    if isinstance(value, list):
        return [typed(x) for x in value]
    return (type(value).__name__, value)


def expected(env, what):
    return yaml.safe_load((EXPECTED / ("%s.%s.yml" % (env, what))).read_text())


def raw_migration(env):
    path = REPO / "inventories" / env / "group_vars" / "all" / "migration.yml"
    return yaml.safe_load(path.read_text())["migration"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_rendered_migration_is_the_one_before_the_topology_was_shared(env):
    assert typed(rendered(env)) == typed(expected(env, "migration"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_an_awx_inventory_source_sees_the_same_variables(env):
    """ansible-inventory on the AWX source path (inventories/<env>/hosts.yml) follows the link: it lists the shared
    topology, and every other variable migration.yml sets is what it was."""
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(REPO / "inventories" / env / "hosts.yml"),
                           "--list"], capture_output=True, text=True, env=playbook_env(), cwd=str(REPO),
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hostvars = json.loads(proc.stdout)["_meta"]["hostvars"]["localhost"]
    assert hostvars["migration_topology"] == topology()
    others = expected(env, "other_vars")
    assert {k: hostvars.get(k) for k in others} == others


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_topology_is_linked_and_only_named_in_each_environment(env):
    """Written once: the environment's migration.yml names every topology part ("{{ migration_topology.<key> }}")
    instead of holding it, and its group_vars/all links the one topology file (a relative link, so it holds in a
    clone, an AWX project checkout and the collection tarball)."""
    link = REPO / "inventories" / env / "group_vars" / "all" / "migration_topology.yml"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)), link
    assert link.resolve() == TOPOLOGY_FILE.resolve()
    raw = raw_migration(env)
    for key, value in topology().items():
        if isinstance(value, dict) and isinstance(raw[key], dict):  # legacy, blue_green: topology and own values
            for sub in value:
                assert raw[key][sub] == "{{ migration_topology.%s.%s }}" % (key, sub), (env, key, sub)
        else:
            assert raw[key] == "{{ migration_topology.%s }}" % key, (env, key)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_renders_the_shared_topology(env):
    m = rendered(env)
    for key, value in topology().items():
        if isinstance(value, dict) and key in ("legacy", "blue_green"):
            assert {sub: m[key][sub] for sub in value} == value, key
        else:
            assert m[key] == value, key


def test_the_lab_rehearses_the_shared_topology():
    """The lab's migration.yml holds the same topology as plain data (lab tooling and tests read that file with a
    YAML parser), so this keeps the two equal."""
    lab = raw_migration("lab")
    for key, value in topology().items():
        if isinstance(value, dict) and key in ("legacy", "blue_green"):
            assert {sub: lab[key][sub] for sub in value} == value, key
        else:
            assert lab[key] == value, key


def test_the_link_survives_the_collection_tarball(tmp_path):
    """make collection's tarball keeps the relative link, and an inventory of the installed collection reads it."""
    def run(*argv, **kw):
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=playbook_env(),
                              timeout=300, check=False, **kw)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout
    run(BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path, REPO)
    (tarball,) = tmp_path.glob("*.tar.gz")
    run(BIN / "ansible-galaxy", "collection", "install", "--no-deps", "--force", "-p", tmp_path / "installed", tarball)
    inventory = tmp_path / "installed" / "ansible_collections" / "athlete_ally" / "nats" / "inventories" / "production"
    assert (inventory / "group_vars" / "all" / "migration_topology.yml").is_symlink()
    out = run(BIN / "ansible-inventory", "-i", inventory / "hosts.yml", "--list", cwd=str(tmp_path))
    assert json.loads(out)["_meta"]["hostvars"]["localhost"]["migration_topology"] == topology()
