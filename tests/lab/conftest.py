"""One real rehearsal lab for the whole tests/lab module: up from nothing through playbooks/lab_up.yml,
down through playbooks/lab_down.yml at the end (teardown)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from lab.ansible_run import REPO, run_playbook_file

sys.path.insert(0, str(REPO))
from lab import labenv  # noqa: E402

LAB_VARS = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "lab.yml").read_text())


class Lab(object):
    """Handle on the running lab: endpoints (.lab/env), the service driver, faults, load, the ledger."""

    def __init__(self, env, up_seconds, up_result):
        self.env = env
        self.dir = Path(env["LAB_DIR"])
        self.up_seconds = up_seconds
        self.up_result = up_result
        self.soak = LAB_VARS["lab_soak"]

    # -- service driver through real playbooks ---------------------------------------------------
    def driver(self, steps, check=False):
        """steps: [(entry, vars)] run as include_role tasks_from=entry in one play; returns PlaybookResult.
        After every step the driver facts are printed by a debug task named 'out <i>'."""
        tasks = []
        for i, step in enumerate(steps):
            entry, params = step[0], step[1]
            include = {"name": "athlete_ally.nats.service_driver", "tasks_from": entry}
            if len(step) > 2:  # keywords applied to the included tasks, e.g. {"check_mode": True}
                include["apply"] = step[2]
            tasks.append({"name": "step %d %s" % (i, entry), "ansible.builtin.include_role": include,
                          "vars": params})
            tasks.append({"name": "out %d" % i, "ansible.builtin.debug": {
                "msg": "{{ {'logs': driver_logs | default(none), 'status': driver_status | default(none)} }}"}})
        play = [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "driver.yml"
            path.write_text(yaml.safe_dump(play, sort_keys=False))
            return run_playbook_file(path, ["--check"] if check else [])

    # -- faults, load, ledger -------------------------------------------------------------------
    def fault(self, *args):
        proc = subprocess.run([sys.executable, str(REPO / "lab" / "faults.py")] + list(args),
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    def start_load(self, run_id, duration, rate=None):
        ledger = self.dir / ("ledger-%s.jsonl" % run_id)
        if ledger.exists():
            ledger.unlink()
        cmd = [sys.executable, str(REPO / "lab" / "loadgen.py"), "--run-id", run_id, "--duration", str(duration),
               "--rate", str(rate or self.soak["rate_per_s"]), "--vendor-ratio", str(self.soak["vendor_ratio"]),
               "--ledger", str(ledger)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return proc, ledger

    def start_load_until_stopped(self, tmp_path, run_id):
        """Steady load until ``stop`` (a file) is touched: ``(proc, ledger, stop)``; end it with finish_load."""
        ledger, stop = tmp_path / ("ledger-%s.jsonl" % run_id), tmp_path / ("stop-%s" % run_id)
        cmd = [sys.executable, str(REPO / "lab" / "loadgen.py"), "--run-id", run_id,
               "--rate", str(self.soak["rate_per_s"]), "--vendor-ratio", str(self.soak["vendor_ratio"]),
               "--ledger", str(ledger), "--stop-file", str(stop), "--env", str(self.dir / "env")]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), ledger, stop

    @staticmethod
    def finish_load(proc, timeout=120):
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    def check_ledger(self, ledger, settle_s=0):
        from lab import ledger as ledger_mod
        return ledger_mod.check(str(ledger), self.env, settle_s=settle_s, out=str(ledger) + ".report.json")

    # -- JetStream ----------------------------------------------------------------------------------
    def js(self, subject, body=None, system=False):
        """``$JS.API.<subject>`` (raw JSON); retried while the cluster cannot answer (node restarting)."""
        from tests.support.jsapi import api
        user, password = (self.env["NATS_SYSTEM_USER"], self.env["NATS_SYSTEM_PASSWORD"]) if system else \
            (self.env["NATS_USER"], self.env["NATS_PASSWORD"])
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = api(self.env["NATS_URL"], subject, body, user=user, password=password, connect_timeout=3)
            except Exception:  # noqa: BLE001 - timeouts/no responders while a leader is elected
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
                continue
            if reply.get("error", {}).get("code") == 503 and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            return reply

    def move_vendor_to_vendor_hot(self):
        """Mid-migration shape (after phase 2's cut-over of vendor.>): AA_VENDOR_HOT owns vendor.> and has its
        own normalize-oura; ATHLETE_ALLY_EVENTS keeps athlete-ally.>, sleep.* and its (drained) normalize-oura."""
        legacy = self.js("STREAM.INFO.ATHLETE_ALLY_EVENTS")["config"]
        if "vendor.>" in legacy["subjects"]:
            legacy["subjects"] = [s for s in legacy["subjects"] if s != "vendor.>"]
            res = self.js("STREAM.UPDATE.ATHLETE_ALLY_EVENTS", legacy)
            assert "error" not in res, res
        res = self.js("STREAM.CREATE.AA_VENDOR_HOT", {
            "name": "AA_VENDOR_HOT", "subjects": ["vendor.>"], "storage": "file", "retention": "limits",
            "max_age": 48 * 3600 * 10 ** 9, "num_replicas": 3, "duplicate_window": 120 * 10 ** 9})
        assert "error" not in res or res["error"].get("err_code") == 10058, res
        oura = next(c for c in LAB_VARS["lab_consumers"] if c["name"] == "normalize-oura")
        res = self.js("CONSUMER.CREATE.AA_VENDOR_HOT.normalize-oura", {"stream_name": "AA_VENDOR_HOT", "config": {
            "durable_name": "normalize-oura", "filter_subject": oura["filter_subject"], "ack_policy": "explicit",
            "ack_wait": 15 * 10 ** 9, "max_deliver": oura["max_deliver"], "deliver_policy": "all",
            "replay_policy": "instant"}})
        assert "error" not in res, res

    def sql(self, query, params=()):
        import psycopg2
        conn = psycopg2.connect(self.env["DATABASE_URL"], connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                rows = cur.fetchall() if cur.description else cur.rowcount
            conn.commit()
            return rows
        finally:
            conn.close()


def lab_processes(lab_dir):
    import psutil
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if (str(lab_dir) + "/") in " ".join(proc.info["cmdline"] or []):
                out.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@pytest.fixture(scope="module")
def lab():
    """The lab, started from nothing (any previous lab stopped and wiped first).

    AA_LAB_REUSE=1 (for working on the tests): keep an existing lab, and leave it running afterwards."""
    reuse = os.environ.get("AA_LAB_REUSE") == "1"
    if not reuse:
        down = run_playbook_file(REPO / "playbooks" / "lab_down.yml", ["-e", "lab_wipe=true"], timeout=180)
        assert down.rc == 0, down.stdout[-3000:] + down.stderr[-3000:]
    t0 = time.monotonic()
    up = run_playbook_file(REPO / "playbooks" / "lab_up.yml", timeout=300)
    seconds = time.monotonic() - t0
    assert up.rc == 0, up.stdout[-5000:] + up.stderr[-3000:]
    env = labenv.load()
    handle = Lab(env, seconds, up)
    try:
        yield handle
    finally:
        if not reuse and lab_processes(handle.dir):  # the last test usually stopped it already
            run_playbook_file(REPO / "playbooks" / "lab_down.yml", timeout=180)
