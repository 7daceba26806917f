# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""One writing run at a time: a lease in the control bucket (control.py), held by the ansible-playbook process.

The holder is the ``ansible-playbook`` process of the run (found by walking up from the module's process), named
by host, boot id, pid and the pid's start time, so a recycled pid is never mistaken for the holder. While that
process lives, a detached heartbeat process renews the lease every ``interval`` seconds; it exits when the process
is gone or the lease is no longer this run's. Whoever finds the lease then decides (``decide``):

* no lease, or this run's own (a playbook importing several writing playbooks): go on;
* held by a process of this controller that is gone (kill -9, a cancelled AWX job): take it over at once;
* held from elsewhere whose heartbeat is older than ``lapse`` seconds: take it over;
* otherwise refuse, naming the holder and since when.
"""

from __future__ import annotations

import datetime
import getpass
import os
import socket
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils.control import Conflict, ControlJournal

KEY = "lease"


def _proc_stat(pid):
    """``(ppid, start_time_ticks)`` of a process, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces and parentheses
    return int(fields[1]), int(fields[19])


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return []


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def playbook_process(start=None):
    """``(pid, start_ticks, argv)`` of the ansible-playbook process that runs this module: the nearest one above
    ``start`` (default: this process), skipping its task worker (forked from it, same command line). The nearest,
    not the outermost: a playbook that runs ansible-playbook itself (molecule) is another run than its children.
    The parent when none is found (a module run by something else than ansible-playbook)."""
    pid = start or os.getpid()
    while pid > 1:
        stat = _proc_stat(pid)
        if stat is None:
            break
        argv = _cmdline(pid)
        if any(os.path.basename(a) == "ansible-playbook" for a in argv[:2]):
            parent = _proc_stat(stat[0])
            while parent is not None and _cmdline(stat[0]) == argv:  # a worker: its playbook is the parent
                pid, stat = stat[0], parent
                parent = _proc_stat(stat[0])
            return pid, stat[1], argv
        pid = stat[0]
    parent = os.getppid()
    return parent, (_proc_stat(parent) or (0, 0))[1], _cmdline(parent)


def this_run(label=None):
    """The identity this run writes into the lease."""
    pid, started, argv = playbook_process()
    playbooks = [a for a in argv if a.endswith((".yml", ".yaml"))]
    host = socket.gethostname()
    boot = _boot_id()
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid says enough
        user = "uid%d" % os.getuid()
    return {
        "run_id": "%s/%s/%d/%d" % (host, boot, pid, started),
        "host": host, "boot_id": boot, "pid": pid, "pid_start": started, "user": user,
        "what": " ".join(playbooks) or " ".join(argv[:3]), "label": label or "",
    }


def process_start(pid):
    """Start time (clock ticks since boot) of a process, or None when it does not exist."""
    stat = _proc_stat(int(pid))
    return None if stat is None else stat[1]


def process_alive(pid, started):
    return process_start(pid) == int(started)


def holder_gone(lease, me):
    """True when the lease was taken on this controller (same host and boot) by a process that no longer runs."""
    return (lease.get("host") == me["host"] and lease.get("boot_id") == me["boot_id"]
            and not process_alive(lease.get("pid", 0), lease.get("pid_start", -1)))


def iso(epoch):
    return datetime.datetime.fromtimestamp(float(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(lease):
    label = " (%s)" % lease["label"] if lease.get("label") else ""
    return "%s by %s@%s pid %s%s" % (lease.get("what") or "a run", lease.get("user"), lease.get("host"),
                                     lease.get("pid"), label)


def decide(lease, me, now, lapse, gone=holder_gone):
    """``(verdict, reason)`` with verdict one of acquire, renew, take_over, refuse."""
    if not lease:
        return "acquire", "no run holds the lease"
    if lease.get("run_id") == me["run_id"]:
        return "renew", "this run already holds the lease"
    if gone(lease, me):
        return "take_over", "%s held it and its process is gone from this controller" % describe(lease)
    age = now - float(lease.get("heartbeat") or 0)
    if age > lapse:
        return "take_over", "%s held it and its heartbeat stopped %ds ago" % (describe(lease), age)
    return "refuse", ("another run holds the migration lease: %s, since %s (heartbeat %ds ago); wait until it "
                      "ends or stop it (stopped on %s it frees the lease at once for that controller, from "
                      "elsewhere %ds after its last heartbeat)"
                      % (describe(lease), iso(lease.get("since") or 0), max(0, age), lease.get("host"), lapse))


def acquire(journal, me, lapse, now=None):
    """Take or renew the lease. Returns ``(verdict, reason, lease)``; raises Conflict when another run took it
    between our read and our write (the caller reports it like a refusal)."""
    now = time.time() if now is None else now
    lease, rev = journal.get(KEY)
    verdict, reason = decide(lease, me, now, lapse)
    if verdict == "refuse":
        return verdict, reason, lease
    mine = dict(lease) if verdict == "renew" else dict(me, since=now)
    mine["heartbeat"] = now
    journal.put(KEY, mine, expect_revision=rev)
    return verdict, reason, mine


def release(journal, me):
    """Delete the lease when it is this run's; True when it was."""
    lease, rev = journal.get(KEY)
    if not lease or lease.get("run_id") != me["run_id"]:
        return False
    journal.put(KEY, None, expect_revision=rev, delete=True)
    return True


def renew_once(journal, me, now=None):
    """One heartbeat: False when the lease is no longer this run's (the heartbeat then stops)."""
    lease, rev = journal.get(KEY)
    if not lease or lease.get("run_id") != me["run_id"]:
        return False
    lease["heartbeat"] = time.time() if now is None else now
    journal.put(KEY, lease, expect_revision=rev)
    return True


def start_heartbeat(make_client, bucket, me, interval):
    """Fork a detached process that renews the lease every ``interval`` seconds while the run's ansible-playbook
    process lives. Returns its pid. The module's own process exits right after; Ansible waits only for the
    module's stdout, which the heartbeat process does not keep."""
    read_end, write_end = os.pipe()
    first = os.fork()
    if first:
        os.close(write_end)
        with os.fdopen(read_end) as handle:
            pid = int(handle.read() or 0)
        os.waitpid(first, 0)
        return pid
    try:  # first child: new session, then the heartbeat in a grandchild that init adopts
        os.close(read_end)
        os.setsid()
        second = os.fork()
        if second:
            os.write(write_end, str(second).encode())
            os._exit(0)
        os.close(write_end)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _heartbeat_loop(make_client, bucket, me, interval)
    finally:
        os._exit(0)


def _heartbeat_loop(make_client, bucket, me, interval):
    while process_alive(me["pid"], me["pid_start"]):
        time.sleep(interval)
        if not process_alive(me["pid"], me["pid_start"]):
            return
        try:
            with make_client() as js:
                if not renew_once(ControlJournal(js, bucket), me):
                    return
        except Conflict:
            return
        except Exception:  # unreachable for now: try again; the lease lapses if this lasts
            continue
