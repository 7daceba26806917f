"""Shared plumbing of the lab services: env file, logging, NATS connection."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from pathlib import Path

import nats

START_MARKER = "=== service starting"


def _env_file_format():
    """plugins/module_utils/env_file.py, loaded from its file: the one env-file format, which service_driver
    set_env writes with (the services run outside Ansible's collection loader, as lab/exporter.py does)."""
    path = Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "env_file.py"
    spec = importlib.util.spec_from_file_location("aa_env_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_env_file(path):
    """The variables of the env file at ``path`` ({} without one); ValueError naming the line the format refuses."""
    return _env_file_format().read(path) if path else {}


def setup(description):
    """Parse --name/--env-file, overlay the env file on os.environ, configure logging."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--name", required=True)
    parser.add_argument("--env-file")
    args = parser.parse_args()
    try:
        overlay = read_env_file(args.env_file)
    except ValueError as exc:  # one line in the service's log instead of a traceback; supervisord retries
        sys.exit("%s cannot start: %s" % (args.name, exc))
    os.environ.update(overlay)
    logging.basicConfig(stream=sys.stdout, level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s " + args.name + " %(message)s")
    log = logging.getLogger(args.name)
    shown = {k: v for k, v in sorted(overlay.items()) if "PASSWORD" not in k}
    log.info("%s %s pid=%d env=%s", START_MARKER, args.name, os.getpid(), shown)
    return args, log


def nats_options(log, name):
    async def on_error(exc):
        log.warning("nats error: %s", exc)

    async def on_disconnect():
        log.warning("nats disconnected")

    async def on_reconnect():
        log.info("nats reconnected")

    # A server that dies without closing the socket (frozen, network gone) is noticed by pings within ~10 s
    # instead of the client default of 4 minutes; reconnects never give up.
    servers = [s.strip() for s in os.environ.get("NATS_URL", "nats://127.0.0.1:4222").split(",") if s.strip()]
    return dict(servers=servers, user=os.environ.get("NATS_USER") or None,
                password=os.environ.get("NATS_PASSWORD") or None, name=name,
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                connect_timeout=2, ping_interval=5, max_outstanding_pings=2, error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect)


async def connect_nats(log, name):
    """Connect, retrying forever (the service starts even when NATS is still coming up)."""
    import asyncio
    delay = 0.2
    while True:
        try:
            return await nats.connect(**nats_options(log, name))
        except Exception as exc:  # noqa: BLE001 - any failure: wait and retry
            log.warning("cannot connect to NATS yet: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


# -- a minimal asyncio HTTP/1.1 JSON server (aiohttp is not part of the pinned venv) --------------
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


async def serve_http(routes, host, port, log):
    """routes: {(METHOD, path): async handler(body_bytes) -> (status, json_obj)}. Returns the asyncio server."""
    import asyncio
    import json

    async def client(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    method, target, _version = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    break
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _sep, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length") or 0)
                if length > 1024 * 1024:
                    status, obj = 413, {"error": "body larger than 1 MiB"}
                    body = b""
                else:
                    body = await reader.readexactly(length) if length else b""
                    path = target.split("?", 1)[0]
                    handler = routes.get((method.upper(), path))
                    if handler is None:
                        allowed = [m for (m, p) in routes if p == path]
                        status, obj = (405, {"error": "use %s" % "/".join(allowed)}) if allowed else \
                            (404, {"error": "no route %s" % path})
                    else:
                        try:
                            status, obj = await handler(body)
                        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server
                            log.exception("handler %s %s failed", method, path)
                            status, obj = 500, {"error": "internal error: %s" % exc}
                data = json.dumps(obj).encode()
                keep = headers.get("connection", "").lower() != "close"
                writer.write(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                              "Connection: %s\r\n\r\n" % (status, _REASONS.get(status, "Status"), len(data),
                                                          "keep-alive" if keep else "close")).encode() + data)
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    return await asyncio.start_server(client, host, port, reuse_address=True)


def run_service(start, stop, routes_factory, host, port, log):
    """Run start() (connect, spawn workers), then serve HTTP until SIGTERM/SIGINT, then stop()."""
    import asyncio
    import signal

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        server = await serve_http(routes_factory(), host, port, log)
        log.info("listening on http://%s:%d", host, port)
        starter = asyncio.ensure_future(start())
        await done.wait()
        log.info("stopping")
        server.close()
        starter.cancel()
        await asyncio.gather(starter, return_exceptions=True)
        await stop()

    asyncio.run(main())
