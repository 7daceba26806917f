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
import json
import ssl

try:
    import nats
    from nats import errors as nats_errors
    HAS_NATS = True
    NATS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    HAS_NATS = False
    NATS_IMPORT_ERROR = exc

STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014


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


def _tls_context(params):
    if not (params.get("tls_ca") or params.get("tls_cert")):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=params.get("tls_ca"))
    if params.get("tls_cert"):
        ctx.load_cert_chain(params["tls_cert"], params.get("tls_key"))
    return ctx


def _split_servers(servers):
    # NATS_URL holds a comma-separated list; a task may pass a list or that same string.
    out = []
    for item in servers or []:
        out.extend(s.strip() for s in str(item).split(",") if s.strip())
    return out


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
        self.timeout = params.get("request_timeout") or 5.0
        self.loop = None
        self.nc = None
        self._last_error = None

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
        if not self.servers:
            raise JetStreamError("no NATS server given: set 'servers' or NATS_URL")
        self.loop = asyncio.new_event_loop()
        p = self.params

        async def on_error(exc):
            self._last_error = exc

        try:
            tls = _tls_context(p)
        except (OSError, ssl.SSLError) as exc:
            raise JetStreamError("cannot load TLS files (tls_ca=%s, tls_cert=%s): %s"
                                 % (p.get("tls_ca"), p.get("tls_cert"), exc))
        options = dict(
            servers=self.servers, connect_timeout=p.get("connect_timeout") or 5.0,
            # nats-py treats max_reconnect_attempts=0 as "retry forever" while picking a server for the
            # first connect (a closed port hung the task); 1 = one retry per server, then NoServersError.
            allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.5, error_cb=on_error,
            name="athlete_ally.nats", tls=tls, tls_hostname=p.get("tls_hostname"),
            user=p.get("user"), password=p.get("password"), token=p.get("token"),
            user_credentials=p.get("creds_file"), nkeys_seed_str=p.get("nkey_seed"),
        )
        try:
            self.nc = self.loop.run_until_complete(nats.connect(**options))
        except Exception as exc:  # nats-py raises many unrelated types; classify them once here
            raise JetStreamError(self._connect_failure(self._last_error or exc))

    def _connect_failure(self, exc):
        where = ",".join(self.servers)
        text = str(exc) or exc.__class__.__name__
        if isinstance(exc, ssl.SSLError) or "ssl" in text.lower() or "tls" in text.lower():
            return ("TLS handshake with %s failed: %s; check tls_ca/tls_cert/tls_key and that the server "
                    "speaks TLS" % (where, text))
        if "authorization" in text.lower() or "authentication" in text.lower() or \
                isinstance(exc, getattr(nats_errors, "AuthorizationError", ())):
            return ("NATS at %s refused the credentials (%s); check user/password, token, creds_file "
                    "or nkey_seed" % (where, text.replace("'", "").strip('" ')))
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
    def raw_request(self, subject, payload=b"", headers=None, timeout=None):
        """Request/reply on any subject; maps transport failures to one-line errors."""
        timeout = timeout or self.timeout
        try:
            return self.run(self.nc.request(subject, payload, timeout=timeout, headers=headers))
        except nats_errors.NoRespondersError:
            if subject.startswith(self.prefix):
                raise JetStreamError("JetStream is not enabled at %s for this account (no responder on %s); "
                                     "enable jetstream in the server config or check domain/api_prefix"
                                     % (self.where, subject))
            raise JetStreamError("no stream or service listens on %s at %s" % (subject, self.where))
        except (nats_errors.TimeoutError, asyncio.TimeoutError):
            raise JetStreamError("request %s to %s timed out after %ss; raise request_timeout or check that "
                                 "the stream has a leader (cluster quorum)" % (subject, self.where, timeout))
        except nats_errors.Error as exc:
            raise JetStreamError("request %s to %s failed: %s" % (subject, self.where, exc))

    def request(self, api, payload=None, timeout=None):
        """JetStream API call: ``api`` is the part after the prefix, e.g. ``STREAM.INFO.ORDERS``."""
        subject = "%s.%s" % (self.prefix, api)
        body = b"" if payload is None else json.dumps(payload).encode()
        msg = self.raw_request(subject, body, timeout=timeout)
        try:
            reply = json.loads(msg.data or b"{}")
        except ValueError:
            raise JetStreamError("JetStream API %s at %s answered with non-JSON data" % (api, self.where))
        if isinstance(reply, dict) and reply.get("error"):
            raise ApiError(api, reply["error"])
        return reply

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
