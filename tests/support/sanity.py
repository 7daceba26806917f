"""Run ``ansible-test sanity`` on this collection without Docker or a download of get-pip.py.

ansible-test only works from a path ``.../ansible_collections/<namespace>/<name>``, so the tracked files
(``git ls-files``, with their working-tree content) are copied into a fresh temp tree of that shape,
made a git repo (ansible-test lists files through git) and tested there with ``--venv --python 3.11``:
each test gets its own virtual environment whose requirements pip installs from the package index.

ansible-test bootstraps pip in those environments with ``get-pip.py``, fetched from
ci-files.testing.ansible.com and cached as ``~/.ansible/test/cache/get_pip_<version>.py``
(ansible_test/_util/target/setup/requirements.py: ``bootstrap``). That host is not reachable here,
so the cache file is pre-seeded with a stand-in that installs the interpreter's bundled pip through
``ensurepip`` and then upgrades to the requested versions from the index (best effort).

Usage: ``.venv/bin/python tests/support/sanity.py [test ...]`` (default: SANITY_TESTS); exit code of
ansible-test; output on stdout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
ANSIBLE_TEST = BIN / "ansible-test"
PYTHON_VERSION = "3.11"

# The tests that run without Docker and network beyond the package index, in a few minutes:
# compile (syntax), validate-modules (docs <-> argument_spec), import (modules import with only
# ansible-core's deps; nats-py must be optional), pep8, pylint, ansible-doc, runtime-metadata
# (meta/runtime.yml), yamllint. Not run: shellcheck / pslint (tools not installed), changelog
# (no changelogs/), integration-aliases (no ansible-test integration targets here).
SANITY_TESTS = ["compile", "validate-modules", "import", "pep8", "pylint", "ansible-doc",
                "runtime-metadata", "yamllint"]

GET_PIP_STANDIN = '''\
# Stand-in for get-pip.py written by athlete_ally.nats tests/support/sanity.py (no access to
# ci-files.testing.ansible.com): bundled pip via ensurepip, then the requested pins from the index.
import subprocess
import sys
import ensurepip

ensurepip.bootstrap(upgrade=True)
pins = [a for a in sys.argv[1:] if not a.startswith("-")]
if pins:
    subprocess.call([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + pins)
'''


def pip_versions():
    """pip versions ansible-test asks a get-pip.py for (``get_venv_packages`` in python_requirements.py)."""
    import ansible_test
    source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
    return set(re.findall(r"\bpip\s*=\s*'([\d.]+)'", source))


def seed_get_pip():
    """Write the stand-in for every pip version ansible-test may request; keep existing caches."""
    cache = Path(os.path.expanduser("~/.ansible/test/cache"))
    cache.mkdir(parents=True, exist_ok=True)
    versions = pip_versions() or {"24.2"}  # 24.2: what ansible-core 2.19 asks for
    written = []
    for version in sorted(versions):
        path = cache / ("get_pip_%s.py" % version.replace(".", "_"))
        if not path.exists() or path.stat().st_size == 0:
            path.write_text(GET_PIP_STANDIN)
            written.append(str(path))
    return written


def build_tree(dest):
    """Copy the tracked files into ``dest/ansible_collections/<ns>/<name>`` and ``git init`` it."""
    import yaml
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    root = Path(dest) / "ansible_collections" / galaxy["namespace"] / galaxy["name"]
    root.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=str(REPO), capture_output=True, check=True,
                           text=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if not src.is_file():  # deleted in the working tree
            continue
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(str(src), str(target))
    git = ["git", "-c", "user.email=sanity@localhost", "-c", "user.name=sanity"]
    subprocess.run(git + ["init", "-q", "."], cwd=str(root), check=True)
    subprocess.run(git + ["add", "-A"], cwd=str(root), check=True)
    subprocess.run(git + ["commit", "-q", "-m", "sanity snapshot"], cwd=str(root), check=True)
    return root


def run_sanity(tests=None, timeout=1200, keep=False):
    """(returncode, output) of ansible-test sanity on a snapshot of the tracked files."""
    tests = list(tests or SANITY_TESTS)
    seed_get_pip()
    tmp = tempfile.mkdtemp(prefix="aa-nats-sanity-")
    try:
        root = build_tree(tmp)
        cmd = [str(ANSIBLE_TEST), "sanity", "--venv", "--python", PYTHON_VERSION, "--color", "no"]
        for test in tests:
            cmd += ["--test", test]
        env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
        env.pop("ANSIBLE_CONFIG", None)
        proc = subprocess.run(cmd, cwd=str(root), env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        return proc.returncode, proc.stdout + proc.stderr
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    rc, out = run_sanity(sys.argv[1:] or None)
    print(out)
    sys.exit(rc)
