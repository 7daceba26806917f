#!/usr/bin/env python3
"""Restart one lab service and wait until it is healthy, in one process.

The lab driver did this in two Ansible module runs (community.general.supervisorctl, then a /health wait),
and every module run costs about half a second of CPU here; a rehearsal rolls the service several times.
The program is driven over supervisord's XML-RPC socket without waiting its startsecs: /health (waited for
here) is what says the service is ready.

Prints one JSON object ({"changed": true, "seconds": ...}); exit status 1 with {"failed": true, "msg": ...}.
"""

from __future__ import annotations

import argparse
import configparser
import json
import sys
import time
import urllib.request
import xmlrpc.client

RUNNING = ("RUNNING", "STARTING")


class Failed(Exception):
    pass


def supervisor(conf):
    """XML-RPC proxy of the lab's supervisord (its unix socket, from the [unix_http_server] section of conf)."""
    from supervisor.xmlrpc import SupervisorTransport
    parser = configparser.RawConfigParser()
    parser.read(conf)
    sock = parser.get("unix_http_server", "file", fallback=None)
    if not sock:
        raise Failed("%s has no [unix_http_server] file=: not the lab's supervisord config; run make lab-up" % conf)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, "unix://" + sock))


def state_of(rpc, program):
    try:
        return rpc.supervisor.getProcessInfo(program)["statename"]
    except xmlrpc.client.Fault as exc:
        raise Failed("supervisord of the lab does not run %s (%s); run make lab-up" % (program, exc.faultString))
    except OSError as exc:
        raise Failed("supervisord of the lab is not reachable (%s); run make lab-up" % exc)


def restart(rpc, program, health_url, timeout):
    """Stop (when running), spawn, and wait until the health URL answers 200; fail early if the program dies."""
    state_of(rpc, program)
    for call, tolerated in ((lambda: rpc.supervisor.stopProcess(program, True), "NOT_RUNNING"),
                            (lambda: rpc.supervisor.startProcess(program, False), "ALREADY_STARTED")):
        try:
            call()
        except xmlrpc.client.Fault as exc:
            if tolerated not in exc.faultString:
                raise Failed(exc.faultString)
    started = time.monotonic()
    last = None
    while True:
        try:
            with urllib.request.urlopen(health_url, timeout=2) as resp:
                if resp.status == 200:
                    return round(time.monotonic() - started, 2)
        except Exception as exc:  # noqa: BLE001 - refused while it starts, unavailable while it binds
            last = str(exc)
        state = state_of(rpc, program)
        if state not in RUNNING:
            raise Failed("it is %s after its start; see its log in the lab's logs/ (last health: %s)" % (state, last))
        if time.monotonic() - started >= timeout:
            raise Failed("not healthy at %s after %ss: %s" % (health_url, timeout, last))
        time.sleep(0.1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", required=True, help="the lab's supervisord.conf")
    ap.add_argument("--program", required=True)
    ap.add_argument("--health-url", required=True)
    ap.add_argument("--timeout", type=float, default=60, help="seconds to wait for /health after the start")
    args = ap.parse_args(argv)
    try:
        seconds = restart(supervisor(args.conf), args.program, args.health_url, args.timeout)
    except Failed as exc:
        print(json.dumps({"failed": True, "msg": "restarting %s: %s" % (args.program, exc)}))
        return 1
    print(json.dumps({"changed": True, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
