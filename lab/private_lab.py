#!/usr/bin/env python3
"""A second lab beside the default one: the lab inventory with every port shifted, and its own lab directory.

The default lab listens on fixed ports (inventories/lab/group_vars/all/lab.yml), so two labs on one machine need
different ports. This writes <root>/inventory/ (hosts.yml, the lab's group_vars linked, plus one file overriding
every value whose key ends in "port" by --offset) and prints the environment that points the playbooks, the lab
scripts and the tests at it:

    eval "$(.venv/bin/python lab/private_lab.py --offset 500)"   # then make lab-up, pytest tests/lab, ...

`make test` uses it to run two groups of lab tests at once (tests/run_suites.py).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LAB_INVENTORY = REPO / "inventories" / "lab"


def shifted(value, offset):
    """``value`` with every int under a key ending in "port" raised by ``offset`` (dicts and lists walked)."""
    if isinstance(value, dict):
        return {k: (v + offset if str(k).endswith("port") and isinstance(v, int) and not isinstance(v, bool)
                    else shifted(v, offset)) for k, v in value.items()}
    if isinstance(value, list):
        return [shifted(v, offset) for v in value]
    return value


def ports(value):
    """Every port number in ``value`` (ints under keys ending in "port")."""
    if isinstance(value, dict):
        return {v for k, v in value.items() if str(k).endswith("port") and isinstance(v, int)} | \
            set().union(*[ports(v) for v in value.values()])
    if isinstance(value, list):
        return set().union(*[ports(v) for v in value])
    return set()


def write(root, offset):
    """Create <root>/inventory for a lab shifted by ``offset``; returns the environment that selects it."""
    sources = sorted((LAB_INVENTORY / "group_vars" / "all").glob("*.yml"))
    overrides, own = {}, set()
    for source in sources:
        for key, value in (yaml.safe_load(source.read_text()) or {}).items():
            own |= ports(value)
            if shifted(value, offset) != value:
                overrides[key] = shifted(value, offset)
    clash = sorted(ports(overrides) & own)
    if clash:
        raise SystemExit("private_lab: offset %d moves ports onto the default lab's own ports %s; pick another offset"
                         % (offset, clash))
    inventory = Path(root).resolve() / "inventory"
    if inventory.exists():
        shutil.rmtree(inventory)
    group_vars = inventory / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    shutil.copy(LAB_INVENTORY / "hosts.yml", inventory / "hosts.yml")
    for source in sources:
        (group_vars / source.name).symlink_to(source)
    # Loaded after the linked files (alphabetical order), so these values win.
    (group_vars / "zz_private_ports.yml").write_text(
        "# Written by lab/private_lab.py: the lab's ports + %d\n" % offset + yaml.safe_dump(overrides, sort_keys=False))
    hosts = str(inventory / "hosts.yml")
    return {"ANSIBLE_INVENTORY": hosts, "AA_LAB_INVENTORY": hosts, "AA_LAB_DIR": str(inventory.parent / "lab")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offset", type=int, required=True, help="added to every port of the default lab")
    ap.add_argument("--root", help="where the inventory and the lab directory go (default .lab-private/<offset>)")
    args = ap.parse_args(argv)
    if args.offset <= 0:
        ap.error("--offset must be positive")
    env = write(args.root or REPO / ".lab-private" / str(args.offset), args.offset)
    for key, value in env.items():
        print("export %s=%s" % (key, shlex.quote(value)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
