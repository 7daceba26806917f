"""All five authentication modes against real single-node nats-servers, through ansible-playbook:
TLS (server verified) and mutual TLS, user/password, token, nkey, creds (JWT: operator, account and user JWTs
minted here with the nkeys package, the server in operator mode with a memory resolver).

Each mode gets a good credential (JetStream answers) and a bad one (one line naming the mode). The whole run is
repeated at -vvv with the output, stderr and the -vvv log searched for every secret. One more run takes a creds
file and an nkey seed file from the process environment only (NATS_CREDS, NATS_NKEY), as AWX injects them.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import time

import pytest

from tests.integration.test_connection_errors import HAS_CRYPTOGRAPHY, _name, _write_key, make_ca, make_server_cert
from lab.ansible_run import run_playbook_file, run_tasks
from lab.nats_cluster import NatsCluster

nkeys = pytest.importorskip("nkeys")

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.skipif(not HAS_CRYPTOGRAPHY, reason="cryptography is not installed in the venv")

PASSWORD, BAD_PASSWORD = "pw-Secret-71ae9", "pw-Wrong-33c0d"
TOKEN, BAD_TOKEN = "tok-Secret-5be11", "tok-Wrong-90f2a"


# -- nkeys and JWTs ---------------------------------------------------------------------------------------------
def new_seed(prefix):
    return nkeys.encode_seed(os.urandom(32), prefix).decode()


def public(seed):
    return nkeys.from_seed(bytearray(seed.encode())).public_key.decode()


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(issuer_seed, subject, name, nats_claims):
    """A NATS v2 JWT (ed25519-nkey) for ``subject`` signed by ``issuer_seed``, as nsc would write it."""
    claims = {"iat": int(time.time()), "iss": public(issuer_seed), "name": name, "sub": subject, "nats": nats_claims}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()) \
        .decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = nkeys.from_seed(bytearray(issuer_seed.encode())).sign(("%s.%s" % (head, body)).encode())
    return "%s.%s.%s" % (head, body, _b64(signature))


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
             "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def creds_text(user_jwt, user_seed):
    return ("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n" % (user_jwt, user_seed))


def operator_setup(d):
    """Operator and account JWTs for the server, a good creds file (user of that account) and a bad one (a user
    of an account the server does not know). Returns (server config lines, good creds path, bad creds path,
    secrets)."""
    op, sys_acc, acc, other_acc = (new_seed(nkeys.PREFIX_BYTE_OPERATOR), new_seed(nkeys.PREFIX_BYTE_ACCOUNT),
                                   new_seed(nkeys.PREFIX_BYTE_ACCOUNT), new_seed(nkeys.PREFIX_BYTE_ACCOUNT))
    op_jwt = mint_jwt(op, public(op), "AA_OP", {"type": "operator", "version": 2,
                                                "system_account": public(sys_acc)})
    sys_jwt = mint_jwt(op, public(sys_acc), "SYS", {"type": "account", "version": 2})
    acc_jwt = mint_jwt(op, public(acc), "AA_APP", {"type": "account", "version": 2, "limits": UNLIMITED})
    paths, secrets = {}, [op, sys_acc, acc, other_acc]
    for name, account in (("good", acc), ("bad", other_acc)):
        user = new_seed(nkeys.PREFIX_BYTE_USER)
        user_jwt = mint_jwt(account, public(user), "aa_%s" % name,
                            {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1,
                             "payload": -1, "issuer_account": public(account)})
        paths[name] = d / ("%s.creds" % name)
        paths[name].write_text(creds_text(user_jwt, user))
        secrets.append(user)
    config = ('operator: "%s"\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: { %s: "%s", %s: "%s" }\n'
              % (op_jwt, public(sys_acc), public(sys_acc), sys_jwt, public(acc), acc_jwt))
    return config, paths["good"], paths["bad"], secrets


def make_client_cert(cert_path, key_path, ca_cert, ca_key):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("aa-client")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)


# -- servers ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import ssl
    d = tmp_path_factory.mktemp("auth")
    ca_cert, ca_key = make_ca(d / "ca.pem", "aa auth CA")
    other_cert, other_key = make_ca(d / "other-ca.pem", "someone else's CA")
    make_server_cert(d / "server.pem", d / "server-key.pem", ca_cert, ca_key)
    make_client_cert(d / "client.pem", d / "client-key.pem", ca_cert, ca_key)
    make_client_cert(d / "rogue.pem", d / "rogue-key.pem", other_cert, other_key)
    nkey_good, nkey_bad = new_seed(nkeys.PREFIX_BYTE_USER), new_seed(nkeys.PREFIX_BYTE_USER)
    (d / "good.nk").write_text(nkey_good + "\n")
    op_config, creds_good, creds_bad, jwt_secrets = operator_setup(d)
    tls = 'tls { cert_file: "%s/server.pem", key_file: "%s/server-key.pem", timeout: 3%%s }' % (d, d)
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    mctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    mctx.load_cert_chain(str(d / "client.pem"), str(d / "client-key.pem"))
    specs = {
        "tls": (tls % "", dict(tls=ctx)),
        "mtls": (tls % (', ca_file: "%s/ca.pem", verify: true' % d), dict(tls=mctx)),
        "userpass": ('authorization { users: [ {user: aa, password: "%s"} ] }' % PASSWORD,
                     dict(user="aa", password=PASSWORD)),
        "token": ('authorization { token: "%s" }' % TOKEN, dict(token=TOKEN)),
        "nkey": ('authorization { users: [ {nkey: %s} ] }' % public(nkey_good), dict(nkeys_seed_str=nkey_good)),
        "creds": (op_config, dict(user_credentials=str(creds_good))),
    }
    servers = {}
    try:
        for name, (extra, _connect) in specs.items():  # all six start at once, then each is waited for
            servers[name] = NatsCluster(d / name, size=1, extra=extra, name=name).start(wait=False)
        for name, (_extra, connect) in specs.items():
            servers[name].wait_ready(**connect)
        yield dict(d=d, servers=servers, nkey_good=nkey_good, nkey_bad=nkey_bad, creds_good=creds_good,
                   creds_bad=creds_bad, secrets=[PASSWORD, BAD_PASSWORD, TOKEN, BAD_TOKEN, nkey_good, nkey_bad]
                   + jwt_secrets + [(d / "client-key.pem").read_text().splitlines()[1]])
    finally:
        for node in servers.values():
            node.stop()


def url(setup, name, scheme="nats"):
    return ["%s://127.0.0.1:%d" % (scheme, setup["servers"][name].client_ports[0])]


def info(name, **args):
    args = dict(args, gather=["account"], connect_timeout=3, retry_budget=0)
    return {"name": name, "athlete_ally.nats.jetstream_info": args,
            "register": name.replace(" ", "_"), "ignore_errors": True}


def cases(s):
    d = s["d"]
    ca = str(d / "ca.pem")
    return [
        info("tls good", servers=url(s, "tls", "tls"), tls_ca=ca),
        info("tls bad", servers=url(s, "tls", "tls"), tls_ca=str(d / "other-ca.pem")),
        info("mtls good", servers=url(s, "mtls", "tls"), tls_ca=ca, tls_cert=str(d / "client.pem"),
             tls_key=str(d / "client-key.pem")),
        info("mtls bad", servers=url(s, "mtls", "tls"), tls_ca=ca, tls_cert=str(d / "rogue.pem"),
             tls_key=str(d / "rogue-key.pem")),
        info("userpass good", servers=url(s, "userpass"), user="aa", password=PASSWORD),
        info("userpass bad", servers=url(s, "userpass"), user="aa", password=BAD_PASSWORD),
        info("token good", servers=url(s, "token"), token=TOKEN),
        info("token bad", servers=url(s, "token"), token=BAD_TOKEN),
        info("nkey good", servers=url(s, "nkey"), nkey_seed=s["nkey_good"]),
        info("nkey bad", servers=url(s, "nkey"), nkey_seed=s["nkey_bad"]),
        info("nkey not a seed", servers=url(s, "nkey"), nkey_seed="SU" + s["nkey_good"][2:20]),
        info("creds good", servers=url(s, "creds"), creds_file=str(s["creds_good"])),
        info("creds bad", servers=url(s, "creds"), creds_file=str(s["creds_bad"])),
        info("creds not a creds file", servers=url(s, "creds"), creds_file=ca),
    ]


@pytest.fixture(scope="module")
def outcome(setup, tmp_path_factory):
    log = tmp_path_factory.mktemp("vvv") / "ansible.log"
    res = run_tasks(cases(setup), args=["-vvv"], env={"ANSIBLE_LOG_PATH": str(log)})
    assert res.data is not None, res.stdout[-3000:] + res.stderr[-3000:]
    return res, log.read_text()


MODES = [("tls", "TLS"), ("mtls", "mutual TLS"), ("userpass", "user/password"), ("token", "token"),
         ("nkey", "nkey"), ("creds", "creds (JWT)")]


@pytest.mark.parametrize("mode,label", MODES)
def test_good_credential_reaches_jetstream_bad_one_fails_in_one_line_naming_the_mode(outcome, mode, label):
    res = outcome[0]
    good = res.task("%s good" % mode)
    assert not good.get("failed"), good
    assert good["account"]["limits"] is not None
    bad = res.task("%s bad" % mode)
    assert bad.get("failed") is True, bad
    msg = bad["msg"]
    assert "\n" not in msg and len(msg) < 400 and "Traceback" not in msg, msg
    assert label in msg, msg
    assert ("mutual TLS" in msg) == (mode == "mtls"), msg


@pytest.mark.parametrize("case,text", [("nkey not a seed", "nkey auth: nkey_seed does not hold a valid user nkey"),
                                       ("creds not a creds file", "is not a NATS creds file")])
def test_malformed_secret_is_refused_before_connecting(outcome, case, text):
    msg = outcome[0].task(case)["msg"]
    assert text in msg and "\n" not in msg, msg


def test_no_secret_in_output_at_vvv(outcome, setup):
    res, log = outcome
    assert "<localhost> EXEC" in log or "ESTABLISH LOCAL CONNECTION" in log, "the log is not at -vvv"
    for secret in setup["secrets"]:
        for where, text in (("stdout", res.stdout), ("stderr", res.stderr), ("-vvv log", log)):
            assert secret not in text, "a secret (%s...) appears in %s" % (secret[:4], where)


def test_creds_and_nkey_files_from_the_environment_only(setup, tmp_path):
    """As AWX injects them: NATS_URL plus NATS_CREDS or NATS_NKEY, the other variables empty, nothing in the task."""
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": [{"name": "from env", "athlete_ally.nats.jetstream_info": {"gather": ["account"]}}]}]
    path = tmp_path / "env.yml"
    path.write_text(json.dumps(play))
    for mode, env in (("creds", {"NATS_CREDS": str(setup["creds_good"])}),
                      ("nkey", {"NATS_NKEY": str(setup["d"] / "good.nk")})):
        env["NATS_URL"] = url(setup, mode)[0]
        # AWX renders every injector of the credential type; blank inputs arrive as empty variables.
        for name in ("NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY", "NATS_CREDS", "NATS_CA", "NATS_CERT",
                     "NATS_KEY"):
            env.setdefault(name, "")
        res = run_playbook_file(path, ["-i", "localhost,", "-vvv"], env=env)
        assert res.rc == 0, res.stdout[-3000:] + res.stderr[-2000:]
        assert not [s for s in setup["secrets"] if s in res.stdout + res.stderr]
