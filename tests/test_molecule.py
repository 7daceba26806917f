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
    lines = log.read_text(errors="replace").splitlines()
    assert proc.returncode == 0, "molecule %s failed: %s (full log %s):\n%s" % (
        scenario, last_failure(lines), log, "\n".join(lines[-60:]))


def last_failure(lines):
    """The last failed task and its result line (earlier ones may have been rescued), so the test's one-line
    summary says what stopped the scenario."""
    task, failure = "", "no failed task in the log"
    for line in lines:
        if line.startswith("TASK ["):
            task = line.split("]")[0] + "]"
        elif "FAILED! =>" in line or line.startswith("ERROR!"):
            failure = "%s %s" % (task, line.strip()[:600])
    return failure
