"""Interrupting a playbook the way an operator's dropped connection does: SIGKILL of its whole process group.

Used by the resume tests and lab/chaos_resume.py. The kill moment is either a task header in the playbook's
output (``TASK [... name ...]`` is printed when that task starts, so the tasks before it have finished) or a
condition polled on the cluster (e.g. "the subjects moved but the shadow sources are still there").
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time


def run_killed(cmd, env, cwd, task=None, when=None, after=None, timeout=600, log=None, action=None):
    """Run ``cmd`` in its own process group and SIGKILL the group at the first of:

    - ``task``: a line starting with ``TASK [`` that contains this text;
    - ``when``: a callable polled every 50 ms that returns True;
    - ``after``: seconds since the start.

    With ``action`` (a callable), call it at that moment in a thread instead, and let the run go on (a fault
    injected while the playbook runs: a stream leader killed, say); the timeout still kills.

    Returns dict(killed, rc, seconds, output, at): ``at`` is what triggered the kill or the action (None when the
    run ended first); ``killed`` is whether the group was SIGKILLed.
    """
    # The default callback prints "TASK [name]" as each task starts: the kill moments are read from it.
    env = dict(env, PYTHONUNBUFFERED="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    state = {"at": None, "killed": False}
    lines = []
    lock = threading.Lock()

    def kill(reason, forced=False):
        with lock:
            if (state["at"] is not None and not forced) or proc.poll() is not None:
                return
            state["at"] = state["at"] or reason
            if action is not None and not forced:
                threading.Thread(target=action, daemon=True).start()
                return
            state["killed"] = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def watch():
        while proc.poll() is None and not state["killed"]:
            if state["at"] is not None:
                pass
            elif after is not None and time.monotonic() - started >= after:
                kill("after %.1fs" % after)
            elif when is not None:
                try:
                    if when():
                        kill("condition")
                except Exception:  # noqa: BLE001 - a failed poll (cluster busy) is just not the moment yet
                    pass
            if time.monotonic() - started > timeout:
                kill("timeout %ss" % timeout, forced=True)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for line in proc.stdout:
        lines.append(line)
        if log is not None:
            log.write(line)
        if task is not None and line.startswith("TASK [") and task in line:
            kill("task %s" % task)
    proc.wait()
    watcher.join(1)
    return dict(killed=state["killed"], rc=proc.returncode, seconds=round(time.monotonic() - started, 1),
                output="".join(lines), at=state["at"])
