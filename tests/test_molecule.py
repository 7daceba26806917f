"""The migration playbooks under load on the rehearsal lab, through molecule (delegated driver).

rollback: each phase then its rollback, topology compared with before; emergency rollback from a half cut-over
check:    --check on every playbook (fresh and half-migrated lab) leaves every configuration identical

The `default` scenario (the whole migration, idempotence, ledger) runs with `molecule test`; `make test` does not run
it because tests/lab/test_resume.py covers all of it (with kills, leader elections, idempotence, phase 3, ledger)
and a third full migration would cost about five minutes of the suite's 30.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["rollback", "check"])
def test_molecule_scenario(scenario):
    env = dict(os.environ,
               PATH="%s:%s" % (BIN, os.environ.get("PATH", "")),
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               AA_LAB_INVENTORY=os.environ.get("AA_LAB_INVENTORY", str(REPO / "inventories" / "lab" / "hosts.yml")),
               # Molecule adds its own inventory, which would move the lab's default directory (derived from
               # inventory_dir); the playbooks a scenario runs itself must find the same lab.
               AA_LAB_DIR=os.environ.get("AA_LAB_DIR", str(REPO / ".lab")),
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", PY_COLORS="0")
    log = REPO / ".lab-logs" / ("molecule-%s.log" % scenario)
    log.parent.mkdir(exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run([str(BIN / "molecule"), "test", "-s", scenario], cwd=str(REPO), env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=2400, check=False)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
    assert proc.returncode == 0, "molecule %s failed (full log %s):\n%s" % (scenario, log, tail)
