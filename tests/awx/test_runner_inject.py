"""awx/runner.py's credential injection follows the credential type's injectors in awx/controller.yml as AWX does:
file templates become files (0600) whose paths fill tower.filename.*, env templates render with blank inputs as
empty strings, and the job's environment never inherits NATS_* from the launching shell."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from lab.ansible_run import REPO

sys.path.insert(0, str(REPO))
from awx import runner  # noqa: E402

CT = runner.nats_type(runner.load())


def test_files_and_env_from_the_injectors(tmp_path):
    env = runner.inject(CT, {"servers": "nats://a:4222,nats://b:4222", "creds": "JWT+SEED", "tls_ca": "CA PEM"},
                        tmp_path)
    assert env["NATS_URL"] == "nats://a:4222,nats://b:4222"
    assert (tmp_path / "cred_creds").read_text() == "JWT+SEED" and env["NATS_CREDS"] == str(tmp_path / "cred_creds")
    assert env["NATS_CA"] == str(tmp_path / "cred_ca") and (tmp_path / "cred_ca").read_text() == "CA PEM"
    assert stat.S_IMODE((tmp_path / "cred_creds").stat().st_mode) == 0o600
    # Blank inputs: empty variables (the modules read an empty NATS_* as unset).
    assert env["NATS_USER"] == env["NATS_PASSWORD"] == env["NATS_TOKEN"] == env["NATS_NKEY"] == env["NATS_CERT"] == ""
    assert env["NATS_TLS_HOSTNAME"] == env["AA_NATS_SYSTEM_USER"] == env["AA_NATS_SYSTEM_PASSWORD"] == ""
    assert set(env) == set(CT["injectors"]["env"])


def test_unknown_or_missing_inputs_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="not fields of NATS JetStream v1"):
        runner.inject(CT, {"servers": "nats://a:4222", "passwd": "x"}, tmp_path)
    with pytest.raises(SystemExit, match="servers is required"):
        runner.inject(CT, {"user": "u"}, tmp_path)


def test_job_environment_does_not_inherit_nats_variables(monkeypatch):
    monkeypatch.setenv("NATS_PASSWORD", "from-the-shell")
    monkeypatch.setenv("AA_NATS_PASSWORD", "from-the-shell")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-shell")
    monkeypatch.setenv("AA_DB_HOST", "from-the-shell")
    with runner.clean_environment():
        assert not [k for k in ("NATS_PASSWORD", "AA_NATS_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AA_DB_HOST")
                    if k in os.environ]
    assert os.environ["NATS_PASSWORD"] == "from-the-shell"


def test_survey_defaults_and_template_defaults():
    data = runner.load()
    jt = runner.template(data, "Emergency rollback")
    assert runner.survey_defaults(jt) == {"awx_rollback_confirm": ""}
    assert runner.template(data, "Roll back phase 2")["job_tags"] == "rollback"
    with pytest.raises(SystemExit, match="no job template"):
        runner.template(data, "Phase 9")
