#!/usr/bin/env python3
"""Fault hooks for the rehearsal lab (supervisord programs; nothing restarts on its own).

  lab/faults.py kill-nats n2          SIGKILL node n2 (stays down)
  lab/faults.py stop-nats n2          graceful stop of n2
  lab/faults.py restart-nats n2       start n2 again (or restart it if running)
  lab/faults.py kill-leader STREAM    SIGKILL the node leading STREAM; prints which
  lab/faults.py kill-server-of CLIENT SIGKILL the node(s) the NATS client named CLIENT is connected to
                                      (e.g. normalize-service); prints which
  lab/faults.py server-of CLIENT      which node(s) the NATS client named CLIENT is connected to
  lab/faults.py stop-postgres | start-postgres
  lab/faults.py kill-normalize [PROGRAM]     SIGKILL normalize-service (stays down)
  lab/faults.py restart-normalize [PROGRAM]  start/restart it
  lab/faults.py status
Prints one JSON line. Reads .lab/env (or --env).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lab import labenv  # noqa: E402


def ctl(env, *args):
    exe = os.path.join(os.path.dirname(env["LAB_PYTHON"]), "supervisorctl")
    proc = subprocess.run([exe, "-c", env["LAB_SUPERVISOR_CONF"]] + list(args), capture_output=True, text=True,
                          check=False)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def state(env, program):
    _rc, out = ctl(env, "status", program)
    parts = out.split()
    return parts[1] if len(parts) > 1 else "UNKNOWN"


def kill(env, program):
    before = state(env, program)
    rc, out = ctl(env, "signal", "KILL", program)
    for _attempt in range(50):
        if state(env, program) not in ("RUNNING", "STARTING", "STOPPING"):
            break
        time.sleep(0.1)
    return {"program": program, "before": before, "after": state(env, program), "output": out, "rc": rc}


def start(env, program):
    before = state(env, program)
    rc, out = ctl(env, "restart" if before == "RUNNING" else "start", program)
    return {"program": program, "before": before, "after": state(env, program), "output": out, "rc": rc}


def stop(env, program):
    before = state(env, program)
    rc, out = ctl(env, "stop", program)
    return {"program": program, "before": before, "after": state(env, program), "output": out, "rc": rc}


def stream_leader(env, stream):
    import nats

    async def run():
        nc = await nats.connect(env["NATS_URL"].split(","), user=env.get("NATS_USER"),
                                password=env.get("NATS_PASSWORD"), connect_timeout=3)
        try:
            info = json.loads((await nc.request("$JS.API.STREAM.INFO." + stream, b"", timeout=5)).data)
        finally:
            await nc.close()
        if "error" in info:
            raise SystemExit("stream %s: %s" % (stream, info["error"].get("description")))
        return info.get("cluster", {}).get("leader")

    return asyncio.run(run())


def server_of(env, client):
    """Names of the nodes holding a connection of the NATS client named ``client`` (monitoring /connz)."""
    import urllib.request
    nodes = env["NATS_NODES"].split(",")
    urls = env["NATS_MONITOR_URLS"].split(",")
    found = []
    for node, url in zip(nodes, urls):
        try:
            with urllib.request.urlopen(url + "/connz?limit=1024", timeout=3) as resp:
                connz = json.loads(resp.read())
        except OSError:
            continue  # node down: nobody is connected to it
        if any(c.get("name") == client for c in connz.get("connections") or []):
            found.append(node)
    return found


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", help="lab env file (default .lab/env)")
    ap.add_argument("action", choices=["kill-nats", "stop-nats", "restart-nats", "kill-leader", "stop-postgres",
                                       "start-postgres", "kill-normalize", "restart-normalize", "kill-server-of",
                                       "server-of", "status"])
    ap.add_argument("target", nargs="?")
    args = ap.parse_args(argv)
    env = labenv.load(args.env)
    a, t = args.action, args.target
    if a in ("kill-nats", "stop-nats", "restart-nats", "kill-leader", "kill-server-of", "server-of") and not t:
        what = {"kill-leader": "STREAM", "kill-server-of": "CLIENT name", "server-of": "CLIENT name"}
        ap.error("%s needs a %s" % (a, what.get(a) or "node name (%s)" % env.get("NATS_NODES")))
    if a == "kill-nats":
        res = kill(env, "nats-" + t)
    elif a == "stop-nats":
        res = stop(env, "nats-" + t)
    elif a == "restart-nats":
        res = start(env, "nats-" + t)
    elif a == "kill-leader":
        leader = stream_leader(env, t)
        res = dict(kill(env, "nats-" + leader), stream=t, leader=leader)
    elif a == "server-of":
        res = {"client": t, "nodes": server_of(env, t)}
    elif a == "kill-server-of":
        nodes = server_of(env, t)
        if not nodes:
            raise SystemExit("no NATS node has a connection named %s" % t)
        kills = [kill(env, "nats-" + n) for n in nodes]
        res = {"client": t, "nodes": nodes, "kills": kills, "rc": max(k["rc"] for k in kills),
               "after": ",".join(k["after"] for k in kills)}
    elif a == "stop-postgres":
        res = stop(env, "postgres")
    elif a == "start-postgres":
        res = start(env, "postgres")
    elif a == "kill-normalize":
        res = kill(env, t or "normalize-service")
    elif a == "restart-normalize":
        res = start(env, t or "normalize-service")
    else:
        rc, out = ctl(env, "status")
        res = {"status": dict(line.split(None, 1) for line in out.splitlines() if line.strip())}
    res["action"] = a
    print(json.dumps(res))
    sys.exit(0 if res.get("rc", 0) in (0, None) else 1)


if __name__ == "__main__":
    main()
