"""Real nats-server processes on free loopback ports, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import nats

REPO = Path(__file__).resolve().parents[1]
CURRENT_BINARY = REPO / ".venv" / "bin" / "nats-server"
OLDEST_BINARY = next(iter(sorted((REPO / ".venv").glob("nats-2.10.*/bin/nats-server"))), None)


async def _quiet(_exc):
    return None


def accounts_config(sys_password, app_password):
    """Server config lines for a system account (user ``sys``) and a JetStream account APP (user ``app``)."""
    return """
accounts {
  SYS { users: [ {user: sys, password: "%s"} ] }
  APP { jetstream: enabled, users: [ {user: app, password: "%s"} ] }
}
system_account: SYS
""" % (sys_password, app_password)


def free_ports(count):
    socks = [socket.socket() for _i in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NatsCluster(object):
    """``size`` JetStream servers clustered on loopback; ``extra`` is appended to every config."""

    def __init__(self, workdir, size=3, binary=CURRENT_BINARY, extra="", name="t"):
        self.workdir = Path(workdir)
        self.size = size
        self.binary = str(binary)
        self.extra = extra
        self.name = name
        ports = free_ports(size * 2)
        self.client_ports = ports[:size]
        self.cluster_ports = ports[size:]
        self.procs = {}

    @property
    def urls(self):
        return ["nats://127.0.0.1:%d" % p for p in self.client_ports]

    @property
    def url(self):
        return ",".join(self.urls)

    def node_name(self, i):
        return "%s%d" % (self.name, i + 1)

    def _config(self, i):
        store = self.workdir / self.node_name(i)
        store.mkdir(parents=True, exist_ok=True)
        lines = [
            'server_name: "%s"' % self.node_name(i),
            'listen: "127.0.0.1:%d"' % self.client_ports[i],
            'jetstream { store_dir: "%s", max_memory_store: 256MB, max_file_store: 2GB }' % store,
        ]
        if self.size > 1:
            routes = ", ".join('"nats-route://127.0.0.1:%d"' % p for p in self.cluster_ports)
            lines.append('cluster { name: "%s", listen: "127.0.0.1:%d", routes: [%s] }'
                         % (self.name, self.cluster_ports[i], routes))
        lines.append(self.extra)
        path = self.workdir / ("%s.conf" % self.node_name(i))
        path.write_text("\n".join(lines) + "\n")
        return path

    def start_node(self, i):
        conf = self._config(i)
        log = open(self.workdir / ("%s.log" % self.node_name(i)), "ab")
        self.procs[i] = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)

    def stop_node(self, i):
        proc = self.procs.pop(i, None)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def start(self, wait=True, **connect):
        for i in range(self.size):
            self.start_node(i)
        if wait:
            self.wait_ready(**connect)
        return self

    def stop(self):
        for i in list(self.procs):
            self.stop_node(i)

    def wait_ready(self, timeout=30, **connect):
        """Until JetStream answers on every node (meta leader elected, all peers current)."""
        deadline = time.time() + timeout
        last = None

        async def probe(url):
            nc = await nats.connect(url, connect_timeout=1, error_cb=_quiet, allow_reconnect=False,
                                    max_reconnect_attempts=0, **connect)
            try:
                msg = await nc.request("$JS.API.INFO", b"", timeout=1)
                return b'"error"' not in msg.data
            finally:
                await nc.close()

        while time.time() < deadline:
            try:
                if all(asyncio.run(probe(u)) for u in self.urls):
                    return
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.2)
        raise RuntimeError("cluster %s not ready after %ss: %r; logs in %s" % (self.name, timeout, last, self.workdir))

    def kill_node(self, i):
        """SIGKILL node ``i``: no clean shutdown, its peers must notice and elect new leaders."""
        proc = self.procs.pop(i, None)
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()

    def node_index(self, name):
        """Index of the node called ``name`` (as JetStream reports it, e.g. a stream's leader)."""
        return [self.node_name(i) for i in range(self.size)].index(name)

    def live_urls(self):
        return [self.urls[i] for i in sorted(self.procs) if self.procs[i].poll() is None]

    def js_api(self, subject, body=None, timeout=2, **connect):
        """``$JS.API.<subject>`` through any live node; the JSON reply (which may hold an error)."""
        import json

        async def go():
            nc = await nats.connect(self.live_urls(), connect_timeout=1, error_cb=_quiet, allow_reconnect=False,
                                    max_reconnect_attempts=1, **connect)
            try:
                msg = await nc.request("$JS.API." + subject, b"" if body is None else json.dumps(body).encode(),
                                       timeout=timeout)
                return json.loads(msg.data)
            finally:
                await nc.close()
        return asyncio.run(go())

    def wait_stream_healthy(self, stream, timeout=60, **connect):
        """Until ``stream`` has a leader and every replica is current and online; its cluster info."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.js_api("STREAM.INFO." + stream, **connect)
                cl = last.get("cluster") or {}
                replicas = cl.get("replicas") or []
                if cl.get("leader") and len(replicas) == last["config"]["num_replicas"] - 1 and \
                        all(r.get("current") and not r.get("offline") for r in replicas):
                    return cl
            except Exception as exc:  # no leader / node restarting: ask again
                last = exc
            time.sleep(0.2)
        raise RuntimeError("stream %s not healthy after %ss: %r; logs in %s" % (stream, timeout, last, self.workdir))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wipe(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def server_version(binary):
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False).stdout
    return out.strip().split()[-1].lstrip("v") if out else "?"


__all__ = ["NatsCluster", "CURRENT_BINARY", "OLDEST_BINARY", "free_ports", "server_version", "os"]
