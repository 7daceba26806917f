"""Quality gates: ansible-doc renders every module, ansible-lint production profile, ansible-test sanity.

Each gate runs the real tool against what is in the tree. A gate is skipped only when its tool cannot
run at all (binary missing); a failing tool is a failing test, with the tool's output in the message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.support import sanity

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
FQCN_PREFIX = "%s.%s." % (GALAXY["namespace"], GALAXY["name"])
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.stem.startswith("_"))


def tool(name):
    path = BIN / name
    if not path.exists():
        pytest.skip("%s is not installed in .venv (run `make setup`)" % name)
    return str(path)


@pytest.fixture(scope="module")
def collections_path():
    """A collections path that resolves this checkout, whether or not `make` linked .collections/."""
    tmp = tempfile.mkdtemp(prefix="aa-nats-doc-")
    link = Path(tmp) / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO)
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def test_modules_discovered():
    assert "jetstream_info" in MODULES and "jetstream_publish" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module, collections_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([tool("ansible-doc"), FQCN_PREFIX + module], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert FQCN_PREFIX + module in proc.stdout
    assert "OPTIONS" in proc.stdout and "EXAMPLES" in proc.stdout and "RETURN VALUES" in proc.stdout
    # ansible-doc warns (and still exits 0) about broken fragments, unknown markup, bad YAML.
    assert "[WARNING]" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-3000:]


def test_ansible_lint_production():
    """Lints whatever playbooks, roles and task files exist (exclusions in .ansible-lint)."""
    proc = subprocess.run([tool("ansible-lint"), "--profile", "production", "--nocolor", "-f", "pep8"],
                          capture_output=True, text=True, cwd=str(REPO), timeout=900, check=False,
                          env=dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", ""))))
    assert proc.returncode == 0, "ansible-lint --profile production failed:\n%s\n%s" % (
        proc.stdout[-6000:], proc.stderr[-3000:])


def test_ansible_test_sanity():
    """ansible-test sanity (tests listed in tests/support/sanity.py: SANITY_TESTS) on a tracked-files snapshot."""
    tool("ansible-test")
    if shutil.which("git") is None:
        pytest.skip("git is not installed; ansible-test lists collection files through git")
    rc, out = sanity.run_sanity(timeout=1500)
    assert rc == 0, "ansible-test sanity %s failed:\n%s" % (" ".join(sanity.SANITY_TESTS), out[-8000:])
