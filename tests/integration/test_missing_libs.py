"""A module run on a Python without the optional libraries: psycopg2 is imported only when a row is read, and its
absence is then one line (missing_required_lib), not an ImportError at the module's start. The interpreter is a bare
venv (stdlib only), as a target host or an execution environment without the package would have."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.ansible_run import REPO, run_tasks


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    for lib in ("psycopg2", "prometheus_client", "cryptography"):  # what this test is about: none of them there
        probe = subprocess.run([str(python), "-c", "import %s" % lib], capture_output=True, timeout=60, check=False)
        assert probe.returncode != 0, "%s is importable from a bare venv: the test proves nothing" % lib
    return python


def test_service_contract_without_psycopg2_is_one_line(bare_python):
    migration = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "migration.yml").read_text())
    task = {"name": "contract", "athlete_ally.nats.service_contract": {
        "migration": migration["migration"], "probe": False,
        "db_host": "127.0.0.1", "db_port": 1, "db_user": "nobody", "db_name": "none"}}
    # the lab inventory templates a few paths from lab_dir; none of them is read here
    res = run_tasks([task], args=["-e", "ansible_python_interpreter=%s" % bare_python, "-e", "lab_dir=/nonexistent"])
    assert res.rc != 0
    msg = res.task("contract")["msg"]
    assert "\n" not in msg, msg
    assert "Failed to import the required Python library (psycopg2)" in msg, msg
    assert "to read the verification row" in msg and "psycopg2-binary" in msg, msg


def test_reading_metrics_without_prometheus_client_is_one_line(bare_python, tmp_path):
    """module_utils/prometheus.py on the bare interpreter with only ansible-core beside it (what a module's payload
    gives it): importing it works, reading a /metrics text says what is missing in one line."""
    import ansible
    (tmp_path / "ansible").symlink_to(Path(ansible.__file__).parent)
    code = ("from ansible_collections.athlete_ally.nats.plugins.module_utils import prometheus\n"
            "try:\n    prometheus.samples('x_total 1\\n', 'x_total')\n"
            "except ValueError as exc:\n    print(exc)\n")
    out = subprocess.run([str(bare_python), "-c", code], capture_output=True, text=True, timeout=60, check=False,
                         env=dict(os.environ, PYTHONPATH="%s:%s" % (tmp_path, REPO / ".collections")))
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert "\n" not in line and "Failed to import the required Python library (prometheus_client)" in line, line
    assert "to read a /metrics text" in line, line
