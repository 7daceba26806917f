# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""lab_service: the lab service driver's actions on one program of the lab's supervisord, on the controller.

The lab runs on the controller by definition, so this is an action plugin (no module process): the status read,
the env file write and the restart with its /health wait were a chain of tasks (supervisorctl through a pipe
lookup, copy = stat + copy module runs, a restart command) costing about 2 s of CPU per set_env here.
The program is driven over supervisord's XML-RPC socket without waiting its startsecs: /health (waited for here)
is what says the service is ready. Documentation: plugins/modules/lab_service.py.
"""

from __future__ import annotations

import configparser
import os
import time
import urllib.request
import xmlrpc.client

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.athlete_ally.nats.plugins.filter import service_driver as env_format

RUNNING = ("RUNNING", "STARTING")
ARGUMENT_SPEC = dict(
    operation=dict(type="str", required=True, choices=["status", "restart", "set_env", "scale"]),
    program=dict(type="str", required=True),
    supervisord_conf=dict(type="path", required=True),
    env_file=dict(type="path", required=True),
    health_url=dict(type="str", required=True),
    health_timeout=dict(type="float", default=60),
    env=dict(type="dict"),
    replicas=dict(type="int"),
)


class Failed(Exception):
    pass


class Supervisor:
    """One program of the lab's supervisord, over its unix socket (the [unix_http_server] file= of conf)."""

    def __init__(self, conf, program):
        from supervisor.xmlrpc import SupervisorTransport  # the lab's venv has supervisor; a production EE need not
        parser = configparser.RawConfigParser()
        parser.read(conf)
        sock = parser.get("unix_http_server", "file", fallback=None)
        if not sock:
            raise Failed("%s has no [unix_http_server] file=: not the lab's supervisord config; run make lab-up" % conf)
        self.rpc = xmlrpc.client.ServerProxy("http://127.0.0.1",
                                             transport=SupervisorTransport(None, None, "unix://" + sock))
        self.program = str(program)  # a plain str: XML-RPC cannot marshal Ansible's tagged strings

    def info(self):
        try:
            return self.rpc.supervisor.getProcessInfo(self.program)
        except xmlrpc.client.Fault as exc:
            raise Failed("supervisord of the lab does not run %s (%s); run make lab-up" % (self.program, exc.faultString))
        except OSError as exc:
            raise Failed("supervisord of the lab is not reachable (%s); run make lab-up" % exc)

    def running(self):
        return self.info()["statename"] in RUNNING

    def _call(self, name, tolerated):
        try:
            getattr(self.rpc.supervisor, name)(self.program, name == "stopProcess")
        except xmlrpc.client.Fault as exc:
            if tolerated not in exc.faultString:
                raise Failed(exc.faultString)

    def stop(self):
        self._call("stopProcess", "NOT_RUNNING")

    def restart(self, health_url, timeout):
        """Stop (when running), start, and wait until healthy; the seconds the start took."""
        self.stop()
        return self.start(health_url, timeout)

    def start(self, health_url, timeout):
        """Start and wait until the program is RUNNING and its health URL answers 200; fails early if the program
        dies. Seconds waited. Both, because they converge separately: /health answers as soon as the service binds,
        while supervisord says STARTING until its startsecs passed; a caller that reads the program right after
        (tests, status) must find it RUNNING, as the Kubernetes driver ends when the rollout is done."""
        self._call("startProcess", "ALREADY_STARTED")
        started, last, healthy = time.monotonic(), None, False
        while True:
            if not healthy:
                try:
                    with urllib.request.urlopen(health_url, timeout=2) as resp:
                        healthy = resp.status == 200
                except Exception as exc:  # noqa: BLE001 - refused while it starts, unavailable while it binds
                    last = str(exc)
            state = self.info()["statename"]
            if healthy and state == "RUNNING":
                return round(time.monotonic() - started, 2)
            if healthy:
                last = "healthy, supervisord still says %s" % state
            if state not in RUNNING:
                raise Failed("it is %s after its start; see its log in the lab's logs/ (last health: %s)" % (state, last))
            if time.monotonic() - started >= timeout:
                raise Failed("not healthy at %s after %ss: %s" % (health_url, timeout, last))
            time.sleep(0.1)


def read_env_text(path):
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", newline="") as handle:  # as the services read it (module_utils/env_file.py)
        return handle.read()


def write_env_file(path, text):
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8", newline="") as out:
        out.write(text)
    os.replace(tmp, path)  # a kill never leaves half a file for the next start to read


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]  # (validation result, validated args)
        check = bool(self._task.check_mode)
        try:
            svc = Supervisor(args["supervisord_conf"], args["program"])
            result.update(getattr(self, "_" + args["operation"])(svc, args, check))
        except (Failed, AnsibleError) as exc:  # AnsibleError: env_file_render refuses a value no env line can hold
            return dict(result, failed=True, msg="lab_service %s %s: %s" % (args["operation"], args["program"], exc))
        return result

    def _status(self, svc, args, check):
        info = svc.info()
        return dict(changed=False, running=info["statename"] in RUNNING, state=info["statename"],
                    pid=str(info["pid"]) if info["pid"] else None,
                    env=env_format.env_file_parse(read_env_text(args["env_file"])))

    def _restart(self, svc, args, check):
        svc.info()
        if check:
            return dict(changed=True, rolled=True)
        return dict(changed=True, rolled=True, seconds=svc.restart(args["health_url"], args["health_timeout"]))

    def _set_env(self, svc, args, check):
        if args["env"] is None:
            raise Failed("set_env needs env (variable -> value; null removes a variable)")
        before_text = read_env_text(args["env_file"])
        before = env_format.env_file_parse(before_text)
        after = env_format.env_merge(before, args["env"])
        after_text = env_format.env_file_render(after, args["program"])
        running = svc.running()
        changed = after != before
        out = dict(changed=changed, rolled=changed and running, running=running,
                   changed_keys=sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
        if changed and self._task.diff:
            out["diff"] = dict(before=before_text, after=after_text, before_header=args["env_file"],
                               after_header=args["env_file"])
        if changed and not check:
            write_env_file(args["env_file"], after_text)
            if running:
                out["seconds"] = svc.restart(args["health_url"], args["health_timeout"])
        return out

    def _scale(self, svc, args, check):
        if args["replicas"] is None or args["replicas"] < 0:
            raise Failed("scale needs replicas (0 stops the program, 1 or more starts it)")
        want, running = args["replicas"] > 0, svc.running()
        out = dict(changed=running != want, running=want)
        if running != want and not check:
            if want:
                out["seconds"] = svc.start(args["health_url"], args["health_timeout"])
            else:
                svc.stop()
        return out
