# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""One synchronous NATS connection for a module run: connect to the first reachable server of ``servers``,
reconnect on request after it closed, request/reply on any subject, every failure one line.

Authentication and TLS options become connect() arguments in nats_auth.py; the JetStream API on top of this is
jetstream_api.py.
"""

from __future__ import annotations

import asyncio
import ssl

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, nats_auth
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError, TransportError

try:
    import nats
    from nats import errors as nats_errors
    HAS_NATS = True
    NATS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module (runner.run_module)
    HAS_NATS = False
    NATS_IMPORT_ERROR = exc

# How a server that closes an established connection shows up on the client, depending on what it was doing.
SERVER_HUNG_UP = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, EOFError)


def split_servers(servers):
    """Server URLs from a list whose items may themselves be comma-separated (NATS_URL holds such a list)."""
    out = []
    for item in servers or []:
        out.extend(s.strip() for s in str(item).split(",") if s.strip())
    return out


def api_prefix(params):
    """The JetStream API subject prefix the options ask for: api_prefix, $JS.<domain>.API, or $JS.API."""
    if params.get("api_prefix"):
        return params["api_prefix"].rstrip(".")
    if params.get("domain"):
        return "$JS.%s.API" % params["domain"]
    return "$JS.API"


def connect_failure(exc, servers, params):
    """The one line for a first connection that failed with ``exc``: TLS, refused credentials, a client
    certificate the server hung up on, or an unreachable server, with what to check."""
    where = ",".join(servers)
    text = str(exc) or exc.__class__.__name__
    mode = nats_auth.auth_mode(params)
    tls_cert = nats_auth.auth_params(params)["tls_cert"]
    if isinstance(exc, ssl.SSLError) or "ssl" in text.lower() or "tls" in text.lower():
        tls = "mutual TLS" if tls_cert else "TLS"
        return ("%s handshake with %s failed (%s): %s; check tls_ca/tls_cert/tls_key (NATS_CA/NATS_CERT/"
                "NATS_KEY) and that the server speaks TLS" % (tls, where, mode, text))
    if "authorization" in text.lower() or "authentication" in text.lower() or \
            isinstance(exc, getattr(nats_errors, "AuthorizationError", ())):
        return ("NATS at %s refused the credentials (%s: %s); %s"
                % (where, mode, text.replace("'", "").strip('" '), nats_auth.auth_hint(mode)))
    if tls_cert and (isinstance(exc, SERVER_HUNG_UP) or "connection lost" in text.lower()):
        # TLS 1.3: the server checks the client certificate after the handshake and just hangs up. Whether
        # the client then sees a reset or a broken pipe (its CONNECT written to a closed socket) is timing.
        return ("mutual TLS with %s failed: the server closed the connection after the handshake (client "
                "certificate refused?) (%s); check that tls_cert/tls_key (NATS_CERT/NATS_KEY) are signed by a CA "
                "the server trusts" % (where, mode))
    if isinstance(exc, (nats_errors.NoServersError, OSError, asyncio.TimeoutError)):
        return ("cannot reach NATS at %s (%s); check 'servers'/NATS_URL and that the server is up"
                % (where, text))
    return "cannot connect to NATS at %s: %s" % (where, text)


class Connection(object):
    """Use as a context manager: ``with Connection(module.params) as conn: conn.raw_request(...)``."""

    def __init__(self, params):
        self.params = params
        self.servers = split_servers(params.get("servers"))
        self.prefix = api_prefix(params)
        self.timeout = durations.option_seconds(params.get("request_timeout"), "request_timeout", 5.0)
        self.connect_timeout = durations.option_seconds(params.get("connect_timeout"), "connect_timeout", 5.0)
        self.loop = None
        self.nc = None
        self._last_error = None
        self._lost = None  # set when the current connection closes (the server we talk to went away)

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
            tls = nats_auth.tls_context(p)
        except (OSError, ssl.SSLError) as exc:
            raise JetStreamError("%s: cannot load TLS files (tls_ca=%s, tls_cert=%s): %s"
                                 % (nats_auth.auth_mode(p), p.get("tls_ca"), p.get("tls_cert"), exc))
        options = dict(
            servers=self.servers, connect_timeout=self.connect_timeout,
            # nats-py treats max_reconnect_attempts=0 as "retry forever" while picking a server for the
            # first connect (a closed port hung the task); 1 = one retry per server, then NoServersError.
            # No automatic reconnect: nats-py would replay buffered writes; request() reconnects itself.
            allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.5, error_cb=on_error,
            disconnected_cb=on_closed, closed_cb=on_closed,
            name="athlete_ally.nats", tls=tls, tls_hostname=p.get("tls_hostname"),
            **nats_auth.auth_connect_options(p)
        )
        self._last_error = None
        try:
            nc = self.loop.run_until_complete(nats.connect(**options))
        except Exception as exc:  # nats-py raises many unrelated types; classify them once here
            raise JetStreamError(connect_failure(self._last_error or exc, self.servers, p))
        self._lost = lost
        return nc

    def reconnect(self):
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
        """Run a coroutine on this connection's loop (for callers that need nats-py directly)."""
        return self.loop.run_until_complete(coro)

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

    def server_version(self):
        return self.nc.connected_server_version if self.nc else None

    def version_tuple(self):
        ver = self.nc._server_info.get("version", "0.0.0") if self.nc else "0.0.0"
        return tuple(int(x) for x in ver.split("-", maxsplit=1)[0].split(".")[:3])
