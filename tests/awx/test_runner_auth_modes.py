"""Every authentication mode through the "NATS JetStream" credential type's injectors, as an AWX job gets them:
awx/runner.py renders the type's file and env injectors from the credential's inputs (PEM text, seed, creds text,
token, password, TLS server name), ansible-runner runs a job whose task names no connection option, against the
real single-node nats-servers of tests/integration/test_auth_modes.py (TLS, mutual TLS, user/password, token,
nkey, creds). A wrong secret fails the job naming the mode; no secret appears in the job's output."""

from __future__ import annotations

import copy
import sys

import pytest

# The servers (one per mode) and secrets of the integration test, started once for this module.
from tests.integration.test_auth_modes import PASSWORD, TOKEN, setup, url  # noqa: F401  # pylint: disable=unused-import
from lab.ansible_run import REPO

sys.path.insert(0, str(REPO))
from awx import runner  # noqa: E402

DATA = copy.deepcopy(runner.load())
DATA["job_templates"].append({"name": "NATS account", "playbook": "tests/awx/playbooks/nats_account.yml"})


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "hosts"
    path.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    return path


def inputs(s, mode, good=True):  # noqa: F811 - s is the setup fixture's value
    d = s["d"]
    ca = (d / "ca.pem").read_text()
    if mode == "tls":
        return {"servers": url(s, "tls", "tls")[0], "tls_ca": ca if good else (d / "other-ca.pem").read_text()}
    if mode == "tls_hostname":
        return {"servers": url(s, "tls", "tls")[0], "tls_ca": ca,
                "tls_hostname": "localhost" if good else "nats.elsewhere.invalid"}
    if mode == "mtls":
        cert, key = ("client.pem", "client-key.pem") if good else ("rogue.pem", "rogue-key.pem")
        return {"servers": url(s, "mtls", "tls")[0], "tls_ca": ca, "tls_cert": (d / cert).read_text(),
                "tls_key": (d / key).read_text()}
    if mode == "userpass":
        return {"servers": url(s, "userpass")[0], "user": "aa", "password": PASSWORD if good else "nope-71"}
    if mode == "token":
        return {"servers": url(s, "token")[0], "token": TOKEN if good else "nope-tok-3"}
    if mode == "nkey":
        return {"servers": url(s, "nkey")[0], "nkey_seed": s["nkey_good"] if good else s["nkey_bad"]}
    return {"servers": url(s, "creds")[0],
            "creds": (s["creds_good"] if good else s["creds_bad"]).read_text()}


MODES = [("tls", "TLS"), ("tls_hostname", "TLS"), ("mtls", "mutual TLS"), ("userpass", "user/password"),
         ("token", "token"), ("nkey", "nkey"), ("creds", "creds (JWT)")]


@pytest.mark.parametrize("mode,label", MODES)
def test_mode_through_the_injectors(setup, inventory, mode, label):  # noqa: F811
    good = runner.launch("NATS account", inventory, inputs(setup, mode), data=DATA)
    assert good.ok, good.stdout[-3000:]
    bad = runner.launch("NATS account", inventory, inputs(setup, mode, good=False), data=DATA)
    assert not bad.ok
    assert label in bad.stdout, bad.stdout[-3000:]
    for secret in setup["secrets"]:
        assert secret not in good.stdout + bad.stdout, "a secret (%s...) is in the job output" % secret[:4]
