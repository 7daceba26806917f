"""ansible-lint --profile production on the kubernetes driver and the example inventories.

ansible-lint widens a path inside a role to the whole role, so violations are filtered to the files this part
owns (roles/service_driver/tasks/kubernetes, inventories/production, inventories/staging); other files of the
role are linted by their own tests.
"""

from __future__ import annotations

import subprocess

from tests.support.ansible_run import BIN, REPO, playbook_env

OWN = ("roles/service_driver/tasks/kubernetes/", "inventories/production/", "inventories/staging/")


def test_ansible_lint_production_profile_on_own_files():
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "-f", "pep8", "--nocolor",
         "roles/service_driver/tasks/kubernetes", "inventories/production", "inventories/staging"],
        cwd=str(REPO), env=playbook_env(), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr  # 2 = violations somewhere; anything else broke
    assert "files processed" in proc.stderr or "Passed" in proc.stderr, proc.stderr
    own = [line for line in proc.stdout.splitlines() if line.startswith(OWN)]
    assert own == [], "\n".join(own)
