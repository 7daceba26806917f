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
  lab/faults.py freeze-postgres | thaw-postgres   SIGSTOP / SIGCONT PostgreSQL and its backends: the database
                                      stops answering without refusing (no error, no commit)
  lab/faults.py misroute PHASE        forge group PHASE's cut-over in the journal (a subject-less scratch copy of
                                      its stream carrying cutover_at/cutover_seq = the legacy stream's last seq) and
                                      publish one of the group's subjects, which the legacy stream still stores
  lab/faults.py unmisroute PHASE      delete that scratch stream (only one misroute made)
  lab/faults.py stall-source          a scratch stream sourcing another, full (max_msgs, discard new): its source
                                      lag stays above 0 and does not shrink
  lab/faults.py unstall-source        lift the limit (the source catches up), then delete both scratch streams
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


# -- faults made with JetStream itself (scratch streams; their names say they are the lab's faults) ------------------
FAULT_MARK = "aa.lab.fault"   # metadata key on every stream a fault creates: unmisroute deletes nothing else
STALL_UP, STALL_SHADOW = "LAB_FAULT_UPSTREAM", "LAB_FAULT_SHADOW"


def js_call(env, calls):
    """Run ``calls(api, publish)`` on one NATS connection; api(subject, body) raises on a JetStream error."""
    import nats

    async def run():
        nc = await nats.connect(env["NATS_URL"].split(","), user=env.get("NATS_USER"),
                                password=env.get("NATS_PASSWORD"), connect_timeout=3)
        try:
            async def api(subject, body=None, ok=()):
                msg = await nc.request("$JS.API." + subject, json.dumps(body).encode() if body is not None else b"",
                                       timeout=5)
                reply = json.loads(msg.data)
                err = reply.get("error")
                if err and err.get("err_code") not in ok:
                    raise SystemExit("%s: %s" % (subject, err.get("description")))
                return reply

            async def publish(subject, data):
                return await nc.jetstream().publish(subject, data, timeout=5)
            return await calls(api, publish)
        finally:
            await nc.close()
    return asyncio.run(run())


def journal_module():
    """plugins/module_utils/journal.py (the journal's keys, docs/JOURNAL.md), loaded by path like lab/exporter.py."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins", "module_utils",
                        "journal.py")
    spec = importlib.util.spec_from_file_location("aa_journal", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lab_migration(env):
    """The inventory's ``migration`` the lab exporter reads (roles/lab writes it beside the lab's env file)."""
    with open(os.path.join(env["LAB_DIR"], "exporter-migration.json")) as handle:
        return json.load(handle)


def concrete(subject):
    """A subject a publisher could use for a filter (``vendor.>`` -> ``vendor.lab-fault``)."""
    return ".".join("lab-fault" if token in ("*", ">") else token for token in subject.split("."))


def misroute(env, phase):
    mig = lab_migration(env)
    group = next((g for g in mig.get("groups") or [] if str(g["phase"]) == str(phase)), None)
    if group is None:
        raise SystemExit("misroute: no group with phase %s in the lab's migration" % phase)
    legacy, stream, subject = mig["legacy"]["stream"], group["stream"], concrete(group["subjects"][0])

    async def calls(api, publish):
        existing = await api("STREAM.INFO." + stream, ok=(10059,))
        if "error" not in existing:
            raise SystemExit("misroute: %s exists (a real migration state); run it on a lab before phase %s"
                             % (stream, phase))
        last = (await api("STREAM.INFO." + legacy))["state"]["last_seq"]
        # what a cut-over records (docs/JOURNAL.md), on a stream that stores nothing: the journal only
        metadata = dict(journal_module().entries({"cutover_at": int(time.time()), "cutover_seq": last}, phase),
                        **{FAULT_MARK: "misroute"})
        config = {"name": stream, "storage": "memory", "num_replicas": 1, "metadata": metadata}
        await api("STREAM.CREATE." + stream, config)
        ack = await publish(subject, b"published to a group's subject after its cut-over")
        return {"group": group["name"], "stream": stream, "cutover_seq": last, "subject": subject,
                "stored_on": ack.stream, "seq": ack.seq}
    res = js_call(env, calls)
    if res["stored_on"] != legacy:
        raise SystemExit("misroute: %s was stored on %s, not on the legacy stream %s"
                         % (subject, res["stored_on"], legacy))
    return res


def unmisroute(env, phase):
    mig = lab_migration(env)
    stream = next(g["stream"] for g in mig["groups"] if str(g["phase"]) == str(phase))

    async def calls(api, _publish):
        info = await api("STREAM.INFO." + stream, ok=(10059,))
        if "error" in info:
            return {"stream": stream, "deleted": False}
        if (info["config"].get("metadata") or {}).get(FAULT_MARK) != "misroute":
            raise SystemExit("unmisroute: %s was not made by misroute; not deleting it" % stream)
        await api("STREAM.DELETE." + stream)
        return {"stream": stream, "deleted": True}
    return js_call(env, calls)


def stall_source(env, backlog=50, room=5):
    async def calls(api, publish):
        for name in (STALL_SHADOW, STALL_UP):
            await api("STREAM.DELETE." + name, ok=(10059,))
        upstream = {"name": STALL_UP, "subjects": ["lab-fault.upstream.>"], "storage": "memory", "num_replicas": 1,
                    "metadata": {FAULT_MARK: "stall-source"}}
        await api("STREAM.CREATE." + STALL_UP, upstream)
        for i in range(backlog):
            await publish("lab-fault.upstream.events", b"%d" % i)
        # room for a few messages only, new ones refused: the source stops with the rest still to copy (its lag)
        await api("STREAM.CREATE." + STALL_SHADOW, {
            "name": STALL_SHADOW, "storage": "memory", "num_replicas": 1, "max_msgs": room, "discard": "new",
            "sources": [{"name": STALL_UP}], "metadata": {FAULT_MARK: "stall-source"}})
        return {"stream": STALL_SHADOW, "source": STALL_UP, "backlog": backlog, "room": room}
    return js_call(env, calls)


def unstall_source(env, timeout=20.0):
    async def calls(api, _publish):
        info = await api("STREAM.INFO." + STALL_SHADOW, ok=(10059,))
        lag = None
        if "error" not in info:
            config = dict(info["config"], max_msgs=-1)
            await api("STREAM.UPDATE." + STALL_SHADOW, config)
            deadline = time.monotonic() + timeout
            while True:  # caught up: lag 0, the alert's condition gone before the streams are
                lag = max([s.get("lag", 0) for s in (await api("STREAM.INFO." + STALL_SHADOW)).get("sources") or []]
                          or [0])
                if lag == 0 or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.2)
        return {"stream": STALL_SHADOW, "lag": lag}
    return js_call(env, calls)


def drop_stall_streams(env):
    async def calls(api, _publish):
        for name in (STALL_SHADOW, STALL_UP):
            await api("STREAM.DELETE." + name, ok=(10059,))
        return {"deleted": [STALL_SHADOW, STALL_UP]}
    return js_call(env, calls)


def signal_postgres(env, sig):
    """SIGSTOP/SIGCONT to the postmaster and every backend (supervisorctl signals the postmaster only, and the
    backends of open connections would go on answering)."""
    import psutil
    import signal as signals
    _rc, out = ctl(env, "pid", "postgres")
    if not out.strip().isdigit() or int(out) == 0:
        raise SystemExit("postgres is not running (supervisorctl pid postgres: %s)" % out)
    master = psutil.Process(int(out))
    procs = [master] + master.children(recursive=True)
    # stop the postmaster first (no new backends), continue it last (backends ready before new connections)
    for proc in (procs if sig == "STOP" else list(reversed(procs))):
        proc.send_signal(signals.SIGSTOP if sig == "STOP" else signals.SIGCONT)
    return {"program": "postgres", "signal": sig, "processes": len(procs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", help="lab env file (default .lab/env)")
    ap.add_argument("action", choices=["kill-nats", "stop-nats", "restart-nats", "kill-leader", "stop-postgres",
                                       "start-postgres", "kill-normalize", "restart-normalize", "kill-server-of",
                                       "server-of", "freeze-postgres", "thaw-postgres", "misroute", "unmisroute",
                                       "stall-source", "unstall-source", "status"])
    ap.add_argument("target", nargs="?")
    args = ap.parse_args(argv)
    env = labenv.load(args.env)
    a, t = args.action, args.target
    if a in ("kill-nats", "stop-nats", "restart-nats", "kill-leader", "kill-server-of", "server-of", "misroute",
             "unmisroute") and not t:
        what = {"kill-leader": "STREAM", "kill-server-of": "CLIENT name", "server-of": "CLIENT name",
                "misroute": "group PHASE", "unmisroute": "group PHASE"}
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
    elif a in ("freeze-postgres", "thaw-postgres"):
        res = signal_postgres(env, "STOP" if a == "freeze-postgres" else "CONT")
    elif a == "misroute":
        res = misroute(env, t)
    elif a == "unmisroute":
        res = unmisroute(env, t)
    elif a == "stall-source":
        res = stall_source(env)
    elif a == "unstall-source":
        res = dict(unstall_source(env), **drop_stall_streams(env))
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
