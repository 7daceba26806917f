# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""A small synchronous JetStream client speaking raw JSON on $JS.API.*.

nats-py's StreamConfig/ConsumerConfig classes silently drop fields they do not know, and the
server replaces the whole config on update, so round-tripping through them would reset fields.
Here every request and reply is a plain dict.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import ssl
import sys
import time
import types

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations


class _StandIn(types.ModuleType):
    """Holds a module's place in sys.modules while nats-py is imported (see _import_nats).

    Any name not set on it comes from the real module, imported the ordinary way when first asked for.
    """

    def __getattr__(self, attr):  # only called for names not set on the stand-in (__spec__ is set: None)
        if sys.modules.get(self.__name__) is self:
            if attr.startswith("__"):  # the import system probing (__path__ for "from x import y"): not a use
                raise AttributeError(attr)
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _nats_py_version(dist):
    """importlib.metadata.version(dist); for nats-py (asked by nats.aio.client at import) read from its METADATA."""
    try:
        site = os.path.dirname(os.path.dirname(sys.modules["nats"].__file__))
        found = [n for n in os.listdir(site) if n.startswith("nats_py-") and n.endswith(".dist-info")]
        if dist == "nats-py" and len(found) == 1:
            with open(os.path.join(site, found[0], "METADATA"), encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():  # end of the headers
                        break
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
    except (KeyError, TypeError, OSError, ValueError):
        pass
    if isinstance(sys.modules.get("importlib.metadata"), _StandIn):
        del sys.modules["importlib.metadata"]
    return importlib.import_module("importlib.metadata").version(dist)


def _import_nats():
    """``import nats`` without paying for what this client never uses (about half of nats-py's import time).

    nats.aio.client imports at the top nats.js (JetStream contexts, KV, object store: ~60 dataclasses), used
    only for replies with headers (status lines) and nc.jetstream(), and importlib.metadata, only to look up
    its own version. While nats is imported, stand-ins hold their places in sys.modules: nats.js stays the
    ``js`` attribute of nats and imports the real package when a name in it is first used; version() reads
    nats-py's METADATA file. Afterwards the stand-ins leave sys.modules, so any later import of these modules
    is an ordinary one.
    """
    if "nats" in sys.modules:
        return sys.modules["nats"]
    stand_ins = {}
    for name in ("nats.js", "importlib.metadata"):
        if name not in sys.modules:
            stand_ins[name] = sys.modules[name] = _StandIn(name)
    if "importlib.metadata" in stand_ins:
        stand_ins["importlib.metadata"].version = _nats_py_version
    try:
        module = importlib.import_module("nats")
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
    if "js" not in vars(module) and "nats.js" in stand_ins:
        module.js = stand_ins["nats.js"]
    return module


try:
    nats = _import_nats()
    from nats import errors as nats_errors
    HAS_NATS = True
    NATS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    HAS_NATS = False
    NATS_IMPORT_ERROR = exc

# JetStream API err_codes, as listed in nats-server's server/errors.json (constant names in comments).
# Every module imports them from here.
CLUSTER_INCOMPLETE = 10004  # JSClusterIncompleteErr, 503 "incomplete results"
CLUSTER_NO_PEERS = 10005  # JSClusterNoPeersErrF, 400 "no suitable peers for placement" (a node is down)
CLUSTER_NOT_ASSIGNED = 10007  # JSClusterNotAssignedErr, 500 "JetStream cluster not assigned to this server"
CLUSTER_NOT_AVAILABLE = 10008  # JSClusterNotAvailErr, 503 "JetStream system temporarily unavailable"
CLUSTER_NOT_LEADER = 10009  # JSClusterNotLeaderErr, 500 "JetStream cluster can not handle request"
CONSUMER_NOT_FOUND = 10014  # JSConsumerNotFoundErr, 404
STREAM_NAME_IN_USE = 10058  # JSStreamNameExistErr, 400 "stream name already in use with a different configuration"
STREAM_NOT_FOUND = 10059  # JSStreamNotFoundErr, 404
STREAM_SUBJECT_OVERLAP = 10065  # JSStreamSubjectOverlapErr, 400 "subjects overlap with an existing stream"
CONSUMER_ALREADY_EXISTS = 10148  # JSConsumerAlreadyExists, 400 (action create on an existing consumer)
CONSUMER_DOES_NOT_EXIST = 10149  # JSConsumerDoesNotExist, 400 (action update on a missing consumer)
TOO_MANY_REQUESTS = 10167  # JSStreamTooManyRequests, 429 "too many requests"

# Error replies that mean "no leader yet / cluster temporarily unavailable": the server refused the request
# without applying it, so it may be sent again. Everything else the server answers is definitive.
TRANSIENT_ERR_CODES = frozenset([CLUSTER_INCOMPLETE, CLUSTER_NO_PEERS, CLUSTER_NOT_ASSIGNED, CLUSTER_NOT_AVAILABLE,
                                 CLUSTER_NOT_LEADER, TOO_MANY_REQUESTS])

# API names (after the prefix) that only read: retried freely. Anything else is a write.
READ_APIS = ("INFO", "STREAM.INFO", "STREAM.LIST", "STREAM.NAMES", "CONSUMER.INFO", "CONSUMER.LIST",
             "CONSUMER.NAMES", "STREAM.MSG.GET", "DIRECT.GET")

DEFAULT_RETRY_BUDGET = 30.0
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 2.0

# What a failed attempt says about the request (see classify()).
NOT_APPLIED = "not applied"  # transient, and the server certainly did not apply it: safe to send again
UNKNOWN = "outcome unknown"  # timed out / connection lost after sending: a write may have taken effect
DEFINITIVE = "definitive"  # the server's final answer: never retried


def is_read(api):
    """True when the JetStream API ``api`` (e.g. ``STREAM.INFO.ORDERS``) only reads."""
    return any(api == name or api.startswith(name + ".") for name in READ_APIS)


def classify(kind, err_code=None):
    """What a failure of ``kind`` (timeout, no_responders, connection_lost, disconnected, api_error) means."""
    if kind in ("timeout", "connection_lost"):
        return UNKNOWN
    if kind in ("no_responders", "disconnected"):
        return NOT_APPLIED
    if kind == "api_error" and err_code in TRANSIENT_ERR_CODES:
        return NOT_APPLIED
    return DEFINITIVE


def may_retry(read, outcome, has_recheck):
    """Whether a request may be attempted again after a failure with ``outcome``."""
    if outcome == DEFINITIVE:
        return False
    if outcome == NOT_APPLIED or read:
        return True
    return bool(has_recheck)  # a write whose outcome is unknown: only after re-reading the state


def backoff(retry, first=BACKOFF_FIRST, cap=BACKOFF_MAX):
    """Seconds to wait before retry number ``retry`` (1, 2, ...): first, doubling, at most cap."""
    return min(cap, first * (2 ** max(0, retry - 1)))


def retry_plan(budget, elapsed, retry):
    """The delay before retry number ``retry``, or None when it would not start inside ``budget`` seconds."""
    if not budget or budget <= 0:
        return None
    delay = backoff(retry)
    if elapsed + delay >= budget:
        return None
    return delay


def fmt_seconds(value):
    """30.0 -> "30", 0.25 -> "0.25" (for messages)."""
    return "%g" % round(value, 2)


def summarize_warnings(lines, cap=10):
    """Identical lines once (with a count), at most ``cap`` lines, the rest summed up in a last line."""
    counts, order = {}, []
    for line in lines:
        if line not in counts:
            order.append(line)
        counts[line] = counts.get(line, 0) + 1
    out = ["%s (x%d)" % (line, counts[line]) if counts[line] > 1 else line for line in order]
    if len(out) > cap:
        rest = len(out) - (cap - 1)
        out = out[:cap - 1] + ["... and %d more retry warnings (%d in all)" % (rest, len(lines))]
    return out


class JetStreamError(Exception):
    """A one-line, operator-facing failure (what, where, what to do).

    ``result`` carries partial results (last seen state, counts) back into the failed task.
    """

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


class ApiError(JetStreamError):
    """The server answered a JetStream API request with an error object."""

    def __init__(self, api, error):
        self.api = api
        self.code = error.get("code")
        self.err_code = error.get("err_code")
        self.description = error.get("description", "")
        super().__init__("JetStream API %s failed: %s (code %s, err_code %s)"
                         % (api, self.description, self.code, self.err_code))
        self.kind = "api_error"
        self.short = "%s (err_code %s)" % (self.description, self.err_code)


class TransportError(JetStreamError):
    """A request that got no answer. ``kind``: timeout, no_responders, connection_lost or disconnected."""

    def __init__(self, msg, kind, short):
        super().__init__(msg)
        self.kind = kind
        self.short = short


class RetryBudgetExhausted(JetStreamError):
    """Transient failures (no leader, connection lost) lasted longer than ``retry_budget``."""


def _tls_context(params):
    params = auth_params(params)
    if not (params.get("tls_ca") or params.get("tls_cert")):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=params.get("tls_ca"))
    if params.get("tls_cert"):
        ctx.load_cert_chain(params["tls_cert"], params.get("tls_key"))
    return ctx


AUTH_OPTIONS = ("user", "password", "token", "nkey_seed", "nkey_file", "creds_file", "tls_ca", "tls_cert", "tls_key")


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


# How a server that closes an established connection shows up on the client, depending on what it was doing.
SERVER_HUNG_UP = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, EOFError)

AUTH_HINTS = {
    "creds (JWT)": "check creds_file/NATS_CREDS (user JWT issued by an account the server trusts, and its seed)",
    "nkey": "check nkey_seed/NATS_NKEY_SEED or nkey_file/NATS_NKEY (a user seed, SU..., whose public key the "
            "server lists)",
    "token": "check token/NATS_TOKEN",
    "user/password": "check user/password (NATS_USER/NATS_PASSWORD)",
}


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


def _auth_connect_options(params):
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


def _seconds(params, name, default):
    """A connection duration option in seconds ("5s", "2m", 5, "5"); one parser for all (durations.py)."""
    value = params.get(name)
    if value is None or value == "":
        return float(default)
    try:
        return durations.to_seconds(value, name)
    except ValueError as exc:
        raise JetStreamError(str(exc))


def _split_servers(servers):
    # NATS_URL holds a comma-separated list; a task may pass a list or that same string.
    out = []
    for item in servers or []:
        out.extend(s.strip() for s in str(item).split(",") if s.strip())
    return out


def config_holds(want, live):
    """True when every field of ``want`` has the same value in ``live`` (dicts compared field by field)."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and config_holds(v, live[k]) for k, v in want.items())
    return want == live


def recheck_stream_config(name, config):
    """``recheck`` for STREAM.CREATE/UPDATE: the stream's info when its live config already holds ``config``."""
    def recheck(js):
        info = js.stream_info(name)
        return info if info and config_holds(config, info.get("config") or {}) else None
    return recheck


def recheck_stream_deleted(name):
    """``recheck`` for STREAM.DELETE: the server's success reply when the stream is gone."""
    def recheck(js):
        return {"success": True} if js.stream_info(name) is None else None
    return recheck


def recheck_consumer_config(stream, name, config):
    """``recheck`` for CONSUMER.CREATE: the consumer's info when its live config already holds ``config``."""
    def recheck(js):
        info = js.consumer_info(stream, name)
        return info if info and config_holds(config, info.get("config") or {}) else None
    return recheck


def recheck_consumer_deleted(stream, name):
    """``recheck`` for CONSUMER.DELETE: the server's success reply when the consumer is gone."""
    def recheck(js):
        return {"success": True} if js.consumer_info(stream, name) is None else None
    return recheck


def _leader_hint(api):
    if api.startswith(("STREAM.INFO.", "STREAM.MSG.", "DIRECT.", "STREAM.PURGE.")):
        return "no stream leader?"
    if api.startswith(("CONSUMER.INFO.", "CONSUMER.PAUSE.", "CONSUMER.LIST.", "CONSUMER.NAMES.")):
        return "no stream or consumer leader?"
    return "no meta leader?"


class JetStreamClient(object):
    """Use as a context manager: ``with JetStreamClient(module.params) as js: js.request(...)``."""

    def __init__(self, params):
        self.params = params
        self.servers = _split_servers(params.get("servers"))
        if params.get("api_prefix"):
            self.prefix = params["api_prefix"].rstrip(".")
        elif params.get("domain"):
            self.prefix = "$JS.%s.API" % params["domain"]
        else:
            self.prefix = "$JS.API"
        self.timeout = _seconds(params, "request_timeout", 5.0)
        self.connect_timeout = _seconds(params, "connect_timeout", 5.0)
        self.retry_budget = max(0.0, _seconds(params, "retry_budget", DEFAULT_RETRY_BUDGET))
        self.warnings = []  # one line per retry; runner.run_module hands them to module.warn()
        self.loop = None
        self.nc = None
        self._last_error = None
        self._lost = None  # set when the current connection closes (the server we talk to went away)
        self._budget_start = None  # monotonic start of the outermost request's retry budget
        self._js_answered = False  # some JetStream API reply was received in this run

    # -- connection -------------------------------------------------------------------------
    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def where(self):
        if self.nc is not None and self.nc.connected_url is not None:
            url = self.nc.connected_url
            return "%s://%s:%s" % (url.scheme, url.hostname, url.port)
        return ",".join(self.servers)

    def connect(self):
        """First connection: fails at once, in one line, when no server in ``servers`` is reachable."""
        if not self.servers:
            raise JetStreamError("no NATS server given: set 'servers' or NATS_URL")
        self.loop = asyncio.new_event_loop()
        self.nc = self._open()

    def _open(self):
        p = self.params
        lost = asyncio.Event()

        async def on_error(exc):
            self._last_error = exc

        async def on_closed():
            lost.set()

        try:
            tls = _tls_context(p)
        except (OSError, ssl.SSLError) as exc:
            raise JetStreamError("%s: cannot load TLS files (tls_ca=%s, tls_cert=%s): %s"
                                 % (auth_mode(p), p.get("tls_ca"), p.get("tls_cert"), exc))
        options = dict(
            servers=self.servers, connect_timeout=self.connect_timeout,
            # nats-py treats max_reconnect_attempts=0 as "retry forever" while picking a server for the
            # first connect (a closed port hung the task); 1 = one retry per server, then NoServersError.
            # No automatic reconnect: nats-py would replay buffered writes; request() reconnects itself.
            allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.5, error_cb=on_error,
            disconnected_cb=on_closed, closed_cb=on_closed,
            name="athlete_ally.nats", tls=tls, tls_hostname=p.get("tls_hostname"),
            **_auth_connect_options(p)
        )
        self._last_error = None
        try:
            nc = self.loop.run_until_complete(nats.connect(**options))
        except Exception as exc:  # nats-py raises many unrelated types; classify them once here
            raise JetStreamError(self._connect_failure(self._last_error or exc))
        self._lost = lost
        return nc

    def _reconnect(self):
        """A new connection to any server in ``servers`` after the current one closed."""
        old, self.nc = self.nc, None
        if old is not None and not old.is_closed:
            try:
                self.run(old.close())
            except Exception:  # the old connection is gone either way
                pass
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        try:
            self.nc = self._open()
        except JetStreamError as exc:
            raise TransportError(str(exc), "disconnected", "cannot reconnect (%s)" % exc)

    def _connect_failure(self, exc):
        where = ",".join(self.servers)
        text = str(exc) or exc.__class__.__name__
        mode = auth_mode(self.params)
        if isinstance(exc, ssl.SSLError) or "ssl" in text.lower() or "tls" in text.lower():
            tls = "mutual TLS" if auth_params(self.params)["tls_cert"] else "TLS"
            return ("%s handshake with %s failed (%s): %s; check tls_ca/tls_cert/tls_key (NATS_CA/NATS_CERT/"
                    "NATS_KEY) and that the server speaks TLS" % (tls, where, mode, text))
        if "authorization" in text.lower() or "authentication" in text.lower() or \
                isinstance(exc, getattr(nats_errors, "AuthorizationError", ())):
            hint = AUTH_HINTS.get(mode.split(" over ", maxsplit=1)[0],
                                  "the server requires credentials: set user/password, token, nkey_seed/nkey_file "
                                  "or creds_file")
            return ("NATS at %s refused the credentials (%s: %s); %s"
                    % (where, mode, text.replace("'", "").strip('" '), hint))
        if auth_params(self.params)["tls_cert"] and (isinstance(exc, SERVER_HUNG_UP)
                                                     or "connection lost" in text.lower()):
            # TLS 1.3: the server checks the client certificate after the handshake and just hangs up. Whether
            # the client then sees a reset or a broken pipe (its CONNECT written to a closed socket) is timing.
            return ("mutual TLS with %s failed: the server closed the connection after the handshake (client "
                    "certificate refused?) (%s); check that tls_cert/tls_key (NATS_CERT/NATS_KEY) are signed by a CA "
                    "the server trusts" % (where, mode))
        if isinstance(exc, (nats_errors.NoServersError, OSError, asyncio.TimeoutError)):
            return ("cannot reach NATS at %s (%s); check 'servers'/NATS_URL and that the server is up"
                    % (where, text))
        return "cannot connect to NATS at %s: %s" % (where, text)

    def close(self):
        if self.nc is not None and not self.nc.is_closed:
            try:
                self.loop.run_until_complete(self.nc.close())
            except Exception:  # closing is best effort; the result is already decided
                pass
        if self.loop is not None:
            self.loop.close()
        self.nc = None
        self.loop = None

    def run(self, coro):
        """Run a coroutine on this client's loop (for callers that need nats-py directly)."""
        return self.loop.run_until_complete(coro)

    # -- raw requests -----------------------------------------------------------------------
    async def _watched_request(self, subject, payload, timeout, headers):
        """nats-py's request, but ended as soon as the connection closes (nats-py would wait the timeout)."""
        nc, lost = self.nc, self._lost
        req = asyncio.ensure_future(nc.request(subject, payload, timeout=timeout, headers=headers))
        if lost is None:
            return await req
        watch = asyncio.ensure_future(lost.wait())
        try:
            done, _pending = await asyncio.wait([req, watch], return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if req in done:
            return req.result()
        req.cancel()
        try:
            await req
        except (asyncio.CancelledError, Exception):  # the request is abandoned with its connection
            pass
        return None

    def raw_request(self, subject, payload=b"", headers=None, timeout=None):
        """Request/reply on any subject; maps transport failures to one-line errors."""
        timeout = timeout or self.timeout
        if self.nc is None or self.nc.is_closed:
            raise TransportError("request %s not sent: the connection to %s is closed" % (subject, self.where),
                                 "disconnected", "connection closed")
        where = self.where
        try:
            msg = self.run(self._watched_request(subject, payload, timeout, headers))
        except nats_errors.NoRespondersError:
            if subject.startswith(self.prefix):
                raise TransportError("JetStream is not enabled at %s for this account (no responder on %s); "
                                     "enable jetstream in the server config or check domain/api_prefix"
                                     % (self.where, subject), "no_responders", "no JetStream responder at %s"
                                     % self.where)
            raise TransportError("no stream or service listens on %s at %s" % (subject, self.where),
                                 "no_responders", "no responder at %s" % self.where)
        except (nats_errors.TimeoutError, asyncio.TimeoutError):
            raise TransportError("request %s to %s timed out after %ss; raise request_timeout or check that "
                                 "the stream has a leader (cluster quorum)" % (subject, self.where, timeout),
                                 "timeout", "timed out after %ss" % timeout)
        except nats_errors.ConnectionClosedError:
            raise TransportError("request %s to %s failed: the connection closed" % (subject, where),
                                 "connection_lost", "connection to %s lost" % where)
        except nats_errors.Error as exc:
            raise JetStreamError("request %s to %s failed: %s" % (subject, self.where, exc))
        if msg is None:
            raise TransportError("request %s to %s failed: the connection closed while waiting for the reply "
                                 "(server down?)" % (subject, where), "connection_lost",
                                 "connection to %s lost" % where)
        return msg

    def _request_once(self, api, payload, timeout):
        if self.nc is None or self.nc.is_closed:
            self._reconnect()
        subject = "%s.%s" % (self.prefix, api)
        body = b"" if payload is None else json.dumps(payload).encode()
        msg = self.raw_request(subject, body, timeout=timeout)
        self._js_answered = True
        try:
            reply = json.loads(msg.data or b"{}")
        except ValueError:
            raise JetStreamError("JetStream API %s at %s answered with non-JSON data" % (api, self.where))
        if isinstance(reply, dict) and reply.get("error"):
            raise ApiError(api, reply["error"])
        return reply

    def request(self, api, payload=None, timeout=None, recheck=None):
        """JetStream API call: ``api`` is the part after the prefix, e.g. ``STREAM.INFO.ORDERS``.

        Transient failures (timeout, no responders, lost connection, "no leader"/"temporarily unavailable"
        replies) are retried with exponential backoff for up to ``retry_budget`` seconds, which requests made
        meanwhile (``recheck``) share. Reads (see READ_APIS) are always retried. A write whose outcome is
        unknown (timed out, connection lost after sending) is sent again only when ``recheck(js)`` is given:
        it re-reads the state and returns the reply to use when the write did take effect, else None (then
        the write is resent). Without ``recheck`` a write is retried only when the failure proves it was not
        applied. Definitive server errors are never retried. Each retry adds a line to ``self.warnings``.
        """
        own = self._budget_start is None
        if own:
            self._budget_start = time.monotonic()
        try:
            return self._request_retrying(api, payload, timeout, recheck)
        finally:
            if own:
                self._budget_start = None

    def _jetstream_expected(self):
        """Whether "no responders" can be passing: JetStream answered before, or the server announces it."""
        if self._js_answered:
            return True
        info = getattr(self.nc, "_server_info", None) or {}
        return bool(info.get("jetstream")) and self.prefix == "$JS.API"

    def _request_retrying(self, api, payload, timeout, recheck):
        read = is_read(api)
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._request_once(api, payload, timeout)
            except (ApiError, TransportError) as exc:
                outcome = classify(exc.kind, getattr(exc, "err_code", None))
                if exc.kind == "no_responders" and not self._jetstream_expected():
                    outcome = DEFINITIVE  # JetStream is off here or domain/api_prefix is wrong: not passing
                if self.retry_budget <= 0 or outcome == DEFINITIVE:
                    raise
                if not may_retry(read, outcome, recheck is not None):
                    raise JetStreamError("%s; not resent because the write's outcome is unknown: re-read the state "
                                         "before running the task again" % exc, **exc.result)
                elapsed = time.monotonic() - self._budget_start
                delay = retry_plan(self.retry_budget, elapsed, attempts)
                if delay is None:
                    raise self._exhausted(api, exc, attempts, elapsed)
                what = "%s: %s" % (api, exc.short)
                if exc.kind == "timeout":
                    what += " (%s)" % _leader_hint(api)
                if recheck is not None and outcome == UNKNOWN:
                    what += "; outcome unknown, re-read the state before retrying"
                self.warnings.append("%s; retrying in %ss (%.1fs of the %ss retry budget used)"
                                     % (what, fmt_seconds(delay), elapsed, fmt_seconds(self.retry_budget)))
                time.sleep(delay)
            if recheck is not None:
                reply = recheck(self)
                if reply is not None:
                    self.warnings.append("%s: the re-read shows the write took effect; not sent again" % api)
                    return reply

    def _exhausted(self, api, exc, attempts, elapsed):
        result = dict(exc.result, retry_attempts=attempts)
        return RetryBudgetExhausted(
            "JetStream API %s at %s still failing after %d attempt%s in %.1fs (retry_budget %ss); last error: %s; "
            "raise retry_budget or check that the cluster has quorum and the stream has a leader"
            % (api, self.where, attempts, "" if attempts == 1 else "s", elapsed, fmt_seconds(self.retry_budget),
               exc.short), **result)

    # -- common lookups ---------------------------------------------------------------------
    def account_info(self):
        return self.request("INFO")

    def stream_info(self, name):
        """Stream info dict, or None when the stream does not exist."""
        try:
            return self.request("STREAM.INFO.%s" % name)
        except ApiError as exc:
            if exc.err_code == STREAM_NOT_FOUND:
                return None
            raise

    def consumer_info(self, stream, name):
        """Consumer info dict, or None when the stream or the consumer does not exist."""
        try:
            return self.request("CONSUMER.INFO.%s.%s" % (stream, name))
        except ApiError as exc:
            if exc.err_code in (STREAM_NOT_FOUND, CONSUMER_NOT_FOUND):
                return None
            raise

    def _paged(self, api, key, payload=None):
        items, offset = [], 0
        while True:
            body = dict(payload or {}, offset=offset)
            reply = self.request(api, body)
            page = reply.get(key) or []
            items.extend(page)
            offset += len(page)
            if not page or offset >= reply.get("total", 0):
                return items

    def streams(self, subject=None):
        """Info of every stream (optionally only those listening on ``subject``)."""
        return self._paged("STREAM.LIST", "streams", {"subject": subject} if subject else None)

    def stream_names(self, subject=None):
        """Names of every stream (optionally only those with a subject that overlaps ``subject``)."""
        return self._paged("STREAM.NAMES", "streams", {"subject": subject} if subject else None)

    def consumers(self, stream):
        return self._paged("CONSUMER.LIST.%s" % stream, "consumers")

    def server_version(self):
        return self.nc.connected_server_version if self.nc else None

    def version_tuple(self):
        ver = self.nc._server_info.get("version", "0.0.0") if self.nc else "0.0.0"
        return tuple(int(x) for x in ver.split("-", maxsplit=1)[0].split(".")[:3])
