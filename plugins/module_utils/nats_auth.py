# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Authentication and TLS of a NATS connection: the task's options (user/password, token, nkey, creds, TLS) as
nats-py connect() arguments, checked before connecting, and the names and hints messages use for them.

nats-py hangs on some malformed credentials (a creds file without its JWT block loops forever) and would print
others: every file and seed is read and checked here first, and no message ever includes a secret.
"""

from __future__ import annotations

import ssl

from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError

AUTH_OPTIONS = ("user", "password", "token", "nkey_seed", "nkey_file", "creds_file", "tls_ca", "tls_cert", "tls_key")

AUTH_HINTS = {
    "creds (JWT)": "check creds_file/NATS_CREDS (user JWT issued by an account the server trusts, and its seed)",
    "nkey": "check nkey_seed/NATS_NKEY_SEED or nkey_file/NATS_NKEY (a user seed, SU..., whose public key the "
            "server lists)",
    "token": "check token/NATS_TOKEN",
    "user/password": "check user/password (NATS_USER/NATS_PASSWORD)",
}
NO_CREDENTIALS_HINT = ("the server requires credentials: set user/password, token, nkey_seed/nkey_file "
                       "or creds_file")


def auth_params(params):
    """The connection's auth options with empty values (an injector that rendered nothing) as unset."""
    return dict((k, params.get(k) or None) for k in AUTH_OPTIONS)


def auth_mode(params):
    """The name of the authentication the options ask for, as messages say it (one mode wins, as in nats-py)."""
    p = auth_params(params)
    if p["creds_file"]:
        mode = "creds (JWT)"
    elif p["nkey_seed"] or p["nkey_file"]:
        mode = "nkey"
    elif p["token"]:
        mode = "token"
    elif p["user"]:
        mode = "user/password"
    else:
        mode = None
    tls = "mutual TLS" if p["tls_cert"] else ("TLS" if p["tls_ca"] else None)
    return " over ".join(m for m in (mode, tls) if m) or "no authentication"


def auth_hint(mode):
    """What to check when the server refused the credentials of ``mode`` (as auth_mode names it)."""
    return AUTH_HINTS.get(mode.split(" over ", maxsplit=1)[0], NO_CREDENTIALS_HINT)


def tls_context(params):
    """An SSLContext for the TLS options, or None when they ask for no TLS. Raises OSError/ssl.SSLError."""
    p = auth_params(params)
    if not (p.get("tls_ca") or p.get("tls_cert")):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=p.get("tls_ca"))
    if p.get("tls_cert"):
        ctx.load_cert_chain(p["tls_cert"], p.get("tls_key"))
    return ctx


def _read_text(path, what):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise JetStreamError("%s auth: cannot read %s: %s" % (what, path, reason))


def _check_seed(seed, what, where):
    """A user nkey seed that nkeys accepts, checked before connecting; messages never include the seed."""
    try:
        import nkeys
    except ImportError:
        raise JetStreamError("%s auth needs the nkeys Python package (pip install nkeys)" % what)
    text = (seed or "").strip()
    try:
        if not text.startswith("SU"):
            raise ValueError("not a user seed")
        nkeys.from_seed(bytearray(text.encode())).wipe()
    except Exception:  # nkeys raises its own error types and binascii errors; the seed itself is never shown
        raise JetStreamError("%s auth: %s does not hold a valid user nkey seed (SU..., 58 characters); "
                             "generate one with nsc or nk -gen user" % (what, where))


def auth_connect_options(params):
    """nats-py connect() keyword arguments for the auth options, validated so nats-py never hangs or leaks."""
    p = auth_params(params)
    out = dict(user=p["user"], password=p["password"], token=p["token"])
    if p["creds_file"]:
        text = _read_text(p["creds_file"], "creds (JWT)")
        # nats-py loops forever over a file without the JWT block: refuse it here, naming the file.
        for marker in ("BEGIN NATS USER JWT", "BEGIN USER NKEY SEED"):
            if marker not in text:
                raise JetStreamError("creds (JWT) auth: %s is not a NATS creds file (no '%s' block); use the "
                                     "file nsc generate creds wrote" % (p["creds_file"], marker))
        seed_block = text.split("BEGIN USER NKEY SEED", 1)[1].splitlines()[1:2]
        _check_seed(seed_block[0] if seed_block else "", "creds (JWT)", "the seed block of %s" % p["creds_file"])
        out["user_credentials"] = p["creds_file"]
    elif p["nkey_seed"]:
        _check_seed(p["nkey_seed"], "nkey", "nkey_seed")
        out["nkeys_seed_str"] = p["nkey_seed"]
    elif p["nkey_file"]:
        _check_seed(_read_text(p["nkey_file"], "nkey"), "nkey", "nkey_file %s" % p["nkey_file"])
        out["nkeys_seed"] = p["nkey_file"]
    return out
