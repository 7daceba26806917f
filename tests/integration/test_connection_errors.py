"""Connection failures through ansible-playbook: each is one line that names the cause and the server.

One nats-server with TLS, user/password users in accounts (one of them the system account) and
JetStream; one plain server without JetStream; one closed port.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import time

import pytest

from lab.ansible_run import run_tasks
from lab.nats_cluster import CURRENT_BINARY, NatsCluster, free_ports

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    HAS_CRYPTOGRAPHY = True
except ImportError:  # the venv pins it (ansible-core needs it); openssl would be the fallback
    HAS_CRYPTOGRAPHY = False

APP_PASSWORD = "app-Secret-9f3e1"
BAD_PASSWORD = "Wrong-Secret-0c7a"
SYS_PASSWORD = "sys-Secret-5d21b"

pytestmark = pytest.mark.skipif(not HAS_CRYPTOGRAPHY, reason="cryptography is not installed in the venv")


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_ca(path, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def make_server_cert(cert_path, key_path, ca_cert, ca_key):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("nats-test-server")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = make_ca(d / "ca.pem", "athlete-ally test CA")
    make_ca(d / "other-ca.pem", "some other CA")
    make_server_cert(d / "server.pem", d / "server-key.pem", ca_cert, ca_key)
    return d


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory, pki):
    extra = """
tls { cert_file: "%(d)s/server.pem", key_file: "%(d)s/server-key.pem", timeout: 3 }
accounts {
  SYS { users: [ {user: sys, password: "%(sys)s"} ] }
  APP { jetstream: enabled, users: [ {user: app, password: "%(app)s"} ] }
}
system_account: SYS
""" % dict(d=pki, sys=SYS_PASSWORD, app=APP_PASSWORD)
    node = NatsCluster(tmp_path_factory.mktemp("secure"), size=1, extra=extra, name="sec")
    node.start(tls=ssl.create_default_context(cafile=str(pki / "ca.pem")), user="app", password=APP_PASSWORD)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    """A core-NATS server: no JetStream at all."""
    d = tmp_path_factory.mktemp("plain")
    port = free_ports(1)[0]
    conf = d / "plain.conf"
    conf.write_text('server_name: "plain"\nlisten: "127.0.0.1:%d"\n' % port)
    log = open(d / "plain.log", "ab")
    proc = subprocess.Popen([str(CURRENT_BINARY), "-c", str(conf)], stdout=log, stderr=log)
    try:
        import socket
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield "nats://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def info(name, **args):
    args.setdefault("gather", ["account"])
    return {"name": name, "athlete_ally.nats.jetstream_info": args, "register": name.replace(" ", "_"),
            "ignore_errors": True}


def cases(secure_server, plain_server, pki):
    url = secure_server.urls[0]
    closed = "nats://127.0.0.1:%d" % free_ports(1)[0]
    ca = str(pki / "ca.pem")
    return [
        info("good", servers=[url], user="app", password=APP_PASSWORD, tls_ca=ca),
        info("good cluster", servers=[url], user="app", password=APP_PASSWORD, tls_ca=ca, gather=["cluster"],
             system_user="sys", system_password=SYS_PASSWORD),
        info("bad password", servers=[url], user="app", password=BAD_PASSWORD, tls_ca=ca),
        info("wrong ca", servers=[url], user="app", password=APP_PASSWORD, tls_ca=str(pki / "other-ca.pem")),
        info("unreachable", servers=[closed], user="app", password=APP_PASSWORD, connect_timeout=2),
        info("no jetstream", servers=[plain_server]),
        info("account without jetstream", servers=[url], user="sys", password=SYS_PASSWORD, tls_ca=ca),
        info("wrong retry budget", servers=[url], user="app", password=APP_PASSWORD, tls_ca=ca, retry_budget="soon"),
    ]


@pytest.fixture(scope="module")
def outcome(secure_server, plain_server, pki):
    res = run_tasks(cases(secure_server, plain_server, pki))
    assert res.data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def one_line_failure(res, name):
    out = res.task(name)
    assert out.get("failed") is True, out
    msg = out["msg"]
    assert "\n" not in msg and len(msg) < 400, msg
    assert "Traceback" not in msg
    return msg


def test_good_credentials_work(outcome, secure_server):
    good = outcome.task("good")
    assert not good.get("failed"), good
    assert good["account"]["limits"] and good["changed"] is False
    cluster = outcome.task("good cluster")
    assert not cluster.get("failed"), cluster
    # A stand-alone server is its own leader and always current.
    assert [(p["name"], p["leader"], p["current"]) for p in cluster["cluster"]["peers"]] == [("sec1", True, True)]


def test_bad_password_names_credentials_and_server(outcome, secure_server):
    msg = one_line_failure(outcome, "bad password")
    assert "credentials" in msg and "127.0.0.1:%d" % secure_server.client_ports[0] in msg


def test_wrong_ca_is_a_tls_error(outcome):
    msg = one_line_failure(outcome, "wrong ca")
    assert "TLS" in msg and "tls_ca" in msg


def test_closed_port_cannot_reach(outcome):
    msg = one_line_failure(outcome, "unreachable")
    assert "cannot reach" in msg


def test_server_without_jetstream(outcome, plain_server):
    msg = one_line_failure(outcome, "no jetstream")
    assert "JetStream is not enabled" in msg and plain_server.split("//")[1] in msg


def test_account_without_jetstream(outcome):
    msg = one_line_failure(outcome, "account without jetstream")
    assert "JetStream not enabled for account" in msg


def test_a_wrong_connection_duration_names_the_option(outcome):
    # Read when the client is made, before connecting: one line naming the option, like any other option.
    msg = one_line_failure(outcome, "wrong retry budget")
    assert msg.startswith("retry_budget: cannot read 'soon' as a duration"), msg


def test_passwords_never_in_output(outcome, secure_server, plain_server, pki):
    for secret in (APP_PASSWORD, BAD_PASSWORD, SYS_PASSWORD):
        assert secret not in outcome.stdout and secret not in outcome.stderr
    # The operator's view at -vvv (default callback prints module invocations and results).
    loud = run_tasks(cases(secure_server, plain_server, pki), args=["-vvv"],
                     env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"})
    text = loud.stdout + loud.stderr
    assert "refused the credentials" in text and "cannot reach" in text  # the failures did run
    for secret in (APP_PASSWORD, BAD_PASSWORD, SYS_PASSWORD):
        assert secret not in text
