"""Each migration alert fires within a lab soak, proven per alert on the real lab (one lab for the module).

For every alert: a phase's soak window (roles/migration/tasks/soak.yml through ansible-playbook, the lab's own
window: migration.soak_seconds of phase 1) starts clean; the alert's fault (lab/faults.py) is caused right after the
window's first poll; Prometheus, evaluating the rules rendered from the lab inventory, takes the alert from pending
to firing (read back from its ALERTS series); the soak fails with one line naming the alert; the fault is removed and
the alert resolves. The lab speaks prometheus-nats-exporter's names, the convention under which every rule is
rendered (nats-surveyor has no source lag). Steady light load runs throughout, so "no traffic" alerts stay quiet
and "work waits" holds. One ansible-playbook runs every window, one after the other (a soak stops at the first firing
alert, so faults at once would be named by whichever fires first); each proof's figures are printed
(docs/MONITORING.md tabulates them)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from lab.ansible_run import BIN, REPO, playbook_env
from tests.support.polling import wait_for
from tests.support.prometheus_api import prom

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CONVENTION = "prometheus-nats-exporter"
PHASE = 1            # whose soak window the proofs use (the lab's longest: migration.soak_seconds)
WINDOW = int(yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "migration.yml").read_text())
             ["migration"]["soak_seconds"][PHASE])
LOAD_PER_S = 4       # light: under a stopped service the backlog stays under the lag threshold for > 30 s


def soak_play(slots, directory):
    """One ansible-playbook for the module running a phase's soak window (roles/migration soak.yml, as phases 1-2
    run it) ``slots`` times, one after the other: window ``i`` starts when the test writes ``go-i`` ("skip": not
    run), its progress file is ``i/soak-phase1.log``, and its outcome (the failure's line, or "passed") is written to
    ``result-i``. One Ansible start-up for all the proofs instead of one each."""
    tasks = []
    for i in range(slots):
        go, result = directory / ("go-%d" % i), directory / ("result-%d" % i)
        tasks += [
            {"name": "Wait for proof %d" % i, "ansible.builtin.wait_for": {"path": str(go), "timeout": 900}},
            {"name": "Soak window %d" % i, "when": "lookup('ansible.builtin.file', '%s') != 'skip'" % go,
             "vars": {"migration_progress_dir": str(directory / str(i))},
             "block": [
                 {"name": "Pause - monitor for alerts",
                  "ansible.builtin.include_role": {"name": "athlete_ally.nats.migration", "tasks_from": "soak"}},
                 {"name": "The window passed %d" % i,
                  "ansible.builtin.copy": {"content": "passed", "dest": str(result), "mode": "0644"}}],
             "rescue": [
                 {"name": "The window failed %d" % i,
                  "ansible.builtin.copy": {"content": "{{ ansible_failed_result.msg }}", "dest": str(result),
                                           "mode": "0644"}}]}]
    return [{
        "name": "A phase's soak windows, as phases 1-2 run them", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/athlete_ally.nats.jetstream": {
            "servers": "{{ nats_servers }}", "user": "{{ nats_user }}", "password": "{{ nats_password }}"}},
        "vars": {"migration_phase": PHASE, "migration_group": "{{ migration.groups[%d] }}" % (PHASE - 1)},
        "tasks": tasks}]


def active(lab):
    """{alertname: state} of the migration's alerts now (pending or firing)."""
    return {a["labels"]["alertname"]: a["state"] for a in prom(lab, "/api/v1/alerts")["alerts"]
            if a["labels"].get("runbook") == "phase2-migration"}


def first_seen(lab, alert, since):
    """{state: Unix time of its first ALERTS sample from ``since`` on}: Prometheus' own record of the transition."""
    found = prom(lab, "/api/v1/query_range", query='max by (alertstate) (ALERTS{alertname="%s"})' % alert,
                 start=since, end=time.time(), step=0.25)["result"]
    return {r["metric"]["alertstate"]: float(r["values"][0][0]) for r in found if r["values"]}


class Load(object):
    """Steady light load through the front door (lab/loadgen.py), restartable with another vendor share."""

    def __init__(self, lab, tmp):
        self.lab, self.tmp, self.proc, self.stop_file = lab, tmp, None, None
        self.ratio = lab.soak["vendor_ratio"]

    def start(self, vendor_ratio=None):
        self.stop()
        run = "alerts%s" % uuid.uuid4().hex[:4]
        self.stop_file = self.tmp / ("stop-" + run)
        self.proc = subprocess.Popen([sys.executable, str(REPO / "lab" / "loadgen.py"), "--run-id", run,
                                      "--rate", str(LOAD_PER_S), "--vendor-ratio", str(vendor_ratio or self.ratio),
                                      "--ledger", str(self.tmp / ("ledger-%s.jsonl" % run)),
                                      "--stop-file", str(self.stop_file), "--env", str(self.lab.dir / "env")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self):
        if self.proc is not None:
            self.stop_file.touch()
            self.proc.communicate(timeout=60)
            self.proc = None


@pytest.fixture(scope="module")
def alerts_lab(request, tmp_path_factory):
    """The module's lab with prometheus-nats-exporter's names, the DLQ of phase 0, and steady light load."""
    # in the environment for the whole module: the lab's supervisord and every playbook's inventory read it
    before = os.environ.get("AA_LAB_EXPORTER")
    os.environ["AA_LAB_EXPORTER"] = CONVENTION
    try:
        lab = request.getfixturevalue("lab")
        # phase 0's stream (the DLQ growth alert reads it; the soak then requires its series)
        dlq = lab.js("STREAM.CREATE.AA_DLQ",
                     {"name": "AA_DLQ", "subjects": ["dlq.>"], "storage": "memory", "num_replicas": 1})
        assert "error" not in dlq, dlq
        lab.load = Load(lab, tmp_path_factory.mktemp("load"))
        lab.load.start()
        try:
            # every series the soak requires, the service's counters included, before the first proof
            assert wait_for(lambda: prom(lab, "/api/v1/query", query="normalize_hrv_messages_total")["result"], 60), \
                "the service's counters never reached Prometheus"
            lab.soaks = Soaks(tmp_path_factory.mktemp("soaks"), len(FAULTS))
            try:
                yield lab
            finally:
                lab.soaks.stop()
        finally:
            lab.load.stop()
    finally:
        if before is None:
            os.environ.pop("AA_LAB_EXPORTER", None)
        else:
            os.environ["AA_LAB_EXPORTER"] = before


class Soaks(object):
    """The module's soak windows (soak_play) running in the background; ``take()`` hands out the next window."""

    def __init__(self, directory, slots):
        self.dir, self.slots, self.next = directory, slots, 0
        for i in range(slots):
            (directory / str(i)).mkdir()
        play = directory / "soaks.yml"
        play.write_text(yaml.safe_dump(soak_play(slots, directory), sort_keys=False))
        with open(directory / "soaks.out", "w") as out:  # the JSON callback's report, at the end
            self.proc = subprocess.Popen([str(BIN / "ansible-playbook"), str(play)], cwd=str(REPO),
                                         env=playbook_env(), stdout=out, stderr=subprocess.STDOUT)

    def take(self):
        assert self.next < self.slots and self.proc.poll() is None, "no soak window left (rc %s)" % self.proc.poll()
        self.next += 1
        return Window(self, self.next - 1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


class Window(object):
    def __init__(self, soaks, i):
        self.soaks, self.i = soaks, i
        self.progress = soaks.dir / str(i) / ("soak-phase%d.log" % PHASE)
        self.result_file = soaks.dir / ("result-%d" % i)

    def start(self, run=True):
        (self.soaks.dir / ("go-%d" % self.i)).write_text("go" if run else "skip")

    def lines(self):
        return self.progress.read_text().splitlines() if self.progress.exists() else []

    def result(self, timeout):
        """The window's outcome: "passed", or its failure's message."""
        ended = wait_for(lambda: self.result_file.exists() or self.soaks.proc.poll() is not None, timeout, 0.05)
        assert ended and self.result_file.exists(), "soak window %d: no outcome (playbook rc %s)" % (
            self.i, self.soaks.proc.poll())
        return self.result_file.read_text()


def publish(lab, items):
    """[(subject, bytes)] through JetStream; returns the acks' (stream, seq)."""
    import nats

    async def run():
        nc = await nats.connect(lab.env["NATS_URL"].split(","), user=lab.env["NATS_USER"],
                                password=lab.env["NATS_PASSWORD"])
        try:
            js = nc.jetstream()
            return [(ack.stream, ack.seq) for ack in [await js.publish(s, d, timeout=5) for s, d in items]]
        finally:
            await nc.close()
    return asyncio.run(run())


def hrv_burst(lab, count):
    """``count`` valid HRV events at once (the service stores them once it runs again)."""
    run = uuid.uuid4().hex[:6]
    publish(lab, [("athlete-ally.hrv.raw-received", json.dumps({
        "eventId": "alerts-burst-%s-%d" % (run, i), "userId": "alerts-burst", "date": "2025-10-01",
        "rmssd": 40.0 + i % 10}).encode()) for i in range(count)])


# alert -> (cause, remove, what the fault is): each fault starts a condition only its own alert reaches first
FAULTS = {
    # the database refuses: every delivery fails and is retried (also DB disconnect later: the error rate is first)
    "NormalizeHighErrorRate": (lambda lab: lab.fault("stop-postgres"), lambda lab: lab.fault("start-postgres"),
                               "PostgreSQL stopped"),
    # the database stops answering without an error: nothing is stored while messages wait, nothing fails
    "NormalizeDbDisconnect": (lambda lab: lab.fault("freeze-postgres"), lambda lab: lab.fault("thaw-postgres"),
                              "PostgreSQL frozen (SIGSTOP)"),
    # the service stopped while 150 events arrive: the backlog grows past the threshold at once
    "NatsConsumerLag": (lambda lab: (lab.fault("kill-normalize"), hrv_burst(lab, 150)),
                        lambda lab: lab.fault("restart-normalize"), "normalize-service killed, 150 events"),
    # a dead letter arrives; removed: the DLQ is emptied (as after a replay)
    "MigrationDlqGrowing": (lambda lab: publish(lab, [("dlq.alerts.test", b"dead letter")]),
                            lambda lab: lab.js("STREAM.PURGE.AA_DLQ", {}), "a dead letter published"),
    # a group's subject stored on the legacy stream after the group's (journal-recorded) cut-over
    "MigrationLegacyStillStoring": (lambda lab: lab.fault("misroute", str(PHASE)),
                                    lambda lab: lab.fault("unmisroute", str(PHASE)),
                                    "group %d's subject published past its cut-over" % PHASE),
    # the front door dies: the publishers' events are refused, the streams store nothing (the service is idle:
    # no DB disconnect; the message rate's for: is longer)
    "NatsStreamDown": (lambda lab: lab.fault("kill-normalize", "ingest-service"),
                       lambda lab: lab.fault("restart-normalize", "ingest-service"), "ingest-service killed"),
    # the HRV producers stop while vendor webhooks go on: the streams store, no HRV message is handled (no work
    # waits on the HRV consumer: no DB disconnect)
    "NormalizeLowMessageRate": (lambda lab: lab.load.start(vendor_ratio=1.0), lambda lab: lab.load.start(),
                                "only vendor events arrive"),
    # a shadow stream whose source cannot copy the rest (stream full): lag > 0, not shrinking
    "MigrationSourceLagNotShrinking": (lambda lab: lab.fault("stall-source"), lambda lab: lab.fault("unstall-source"),
                                       "a sourcing stream full (source stalled)"),
}


@pytest.mark.parametrize("alert", sorted(FAULTS))
def test_the_alert_fires_within_a_lab_soak_which_fails_naming_it_and_it_resolves(alerts_lab, alert):
    lab = alerts_lab
    cause, remove, what = FAULTS[alert]
    window = lab.soaks.take()
    # a clean start: nothing pending or firing (the previous proof's alert resolved)
    clean = wait_for(lambda: not active(lab), 90, interval=0.25)
    window.start(run=bool(clean))
    assert clean, active(lab)
    removed = None
    try:
        # the window has started: its first poll is written (and saw no alert)
        assert wait_for(window.lines, 90, interval=0.05), "soak window %d never started: %s" % (
            window.i, window.result(1) if window.result_file.exists() else "no outcome")
        first = window.lines()[0]
        assert "alerts none" in first and "pending" not in first, first
        caused = time.time()
        cause(lab)
        stopped = window.result(120)
        states = first_seen(lab, alert, caused)
        remove(lab)
        removed = time.time()
        resolved = wait_for(lambda: alert not in active(lab), 90, interval=0.25)
        resolved_after = time.time() - removed
    finally:
        if removed is None:
            remove(lab)
    assert stopped != "passed", "the soak passed through %s:\n%s" % (what, "\n".join(window.lines()))
    assert "\n" not in stopped and stopped.startswith("soak stopped at "), stopped
    assert re.search(r"alert (.*; )?%s \{" % alert, stopped), stopped
    # Prometheus' own record: pending first, then firing (for: held), both after the fault (none at its instant)
    assert {"pending", "firing"} <= set(states), states
    assert caused < states["pending"] < states["firing"], states
    assert resolved, "%s did not resolve after the fault was removed: %s" % (alert, active(lab))
    at = float(re.search(r"soak stopped at (\d+)s", stopped).group(1))
    print("%s (%s): pending %.1f s, firing %.1f s after the fault; the soak stopped at %.0f s of its %d s window%s; "
          "resolved %.1f s after the fault was removed"
          % (alert, what, states["pending"] - caused, states["firing"] - caused, at, WINDOW,
             " (waiting on the alert pending at its end)" if at > WINDOW else "", resolved_after))
