"""Monitoring on the real lab (one lab for the module): Prometheus scrapes every normalize instance and the JetStream
exporter under the runbook's names; a soak window fails within one poll of an alert firing when PostgreSQL stops,
naming it, and nothing is lost; phases send start/issue/rollback/complete messages to a webhook (the secret URL never
printed); every dashboard query returns series."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid

import pytest

from tests.lab.conftest import REPO
from tests.monitoring.webhook import Receiver
from lab.ansible_run import BIN, playbook_env, run_playbook_file
from tests.support.polling import wait_for
from tests.support.prometheus_api import prom

sys.path.insert(0, str(REPO / "monitoring" / "grafana"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SECRET = "s3cr3t-token"
RUNBOOK_ALERTS = {"NormalizeHighErrorRate", "NormalizeDbDisconnect", "NatsConsumerLag", "NatsStreamDown",
                  "NormalizeLowMessageRate"}


def firing(lab):
    return [a for a in prom(lab, "/api/v1/alerts")["alerts"]
            if a["state"] == "firing" and a["labels"].get("runbook") == "phase2-migration"]


def phase0(tmp_path, *args):
    """ansible-playbook phase0.yml in the background (default stdout: its lines are what an operator sees)."""
    env = playbook_env({"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "AA_PROGRESS_DIR": str(tmp_path)})
    return subprocess.Popen([str(BIN / "ansible-playbook"), str(REPO / "playbooks" / "phase0.yml"), "-v"] + list(args),
                            cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def target_health(lab):
    return {t["labels"].get("service", t["labels"]["job"]): t["health"]
            for t in prom(lab, "/api/v1/targets")["activeTargets"]}


def targets_up(lab):
    health = target_health(lab)  # one read per poll: both targets judged on the same answer
    return health.get("jetstream") == "up" and health.get("normalize-service") == "up"


def rules(lab):
    return [r for g in prom(lab, "/api/v1/rules")["groups"] for r in g["rules"]]


def rules_healthy(lab):
    found = rules(lab)  # the lab's rendering: the runbook's and the migration's alerts (no source lag with surveyor)
    return len(found) >= 7 and all(r["health"] == "ok" for r in found)


def test_prometheus_scrapes_every_normalize_instance_and_the_exporter(lab):
    # A target is "unknown" until its first scrape, which Prometheus spreads over the scrape interval after it
    # starts: wait for it (bounded) instead of reading the health once right after lab up.
    assert wait_for(lambda: targets_up(lab), 30, interval=0.25), target_health(lab)
    targets = target_health(lab)
    assert {"normalize-service-blue", "normalize-service-green"} <= set(targets)  # stopped programs: down, scraped
    # likewise a rule's health is "unknown" until its group's first evaluation
    assert wait_for(lambda: rules_healthy(lab), 30, interval=0.25), rules(lab)
    # the lag PromQL of the rules, the soak and the report (promql.py, the lab's exporter names) answers
    from lab import report as report_html
    assert wait_for(lambda: prom(lab, "/api/v1/query", query=report_html.lab_queries()["lag"])["result"], 10)
    print("lab up %.1f s (Prometheus + exporter included)" % lab.up_seconds)


def test_soak_stops_within_a_poll_of_the_alert_when_postgres_stops_and_nothing_is_lost(lab, tmp_path):
    poll = 2.0  # migration.soak_poll_seconds of the lab inventory
    # the go/no-go gate: phase 0 starts only after a passed preflight (no webhook yet: the first message below is the
    # phase's own)
    pre = run_playbook_file(REPO / "playbooks" / "preflight.yml", timeout=300)
    assert pre.rc == 0, pre.stdout[-3000:]
    proc, ledger = lab.start_load("mon%s" % uuid.uuid4().hex[:4], 60)
    pg_down = False
    with Receiver() as hook:
        try:
            assert wait_for(lambda: lab.sql("SELECT count(*) FROM hrv_data")[0][0] > 20, 20)
            play = phase0(tmp_path, "-e", "migration_soak_seconds=90", "-e", "migration_notify_url=" + hook.url)
            progress = tmp_path / "soak-phase0.log"
            assert wait_for(progress.exists, 60), "the soak never started"
            time.sleep(2 * poll)  # a quiet poll or two first
            assert not firing(lab)
            stopped_at = time.monotonic()
            assert lab.fault("stop-postgres")["after"] == "STOPPED"
            pg_down = True
            first = wait_for(lambda: firing(lab), 60, interval=0.1)
            fired_at = time.monotonic()
            assert first, "no alert fired within 60 s of stopping PostgreSQL"
            # the soak's last status line (written at the poll that saw the alert) lands within one poll
            stopping = re.compile(r"alerts (?!none)")
            assert wait_for(lambda: stopping.search(progress.read_text()), poll + 1.5, interval=0.05), \
                progress.read_text()
            seen_at = time.monotonic()
            lab.fault("start-postgres")  # a short outage: nothing reaches its 5th delivery (the DLQ)
            pg_down = False
            out = play.communicate(timeout=60)[0]
        finally:
            if pg_down:
                lab.fault("start-postgres")
        names = {a["labels"]["alertname"] for a in first}
        assert names <= RUNBOOK_ALERTS, names
        assert play.returncode != 0
        stop_line = next(line for line in out.splitlines() if "soak stopped at" in line)
        named = [n for n in names if "alert %s {" % n in stop_line]
        assert named and "runbook=phase2-migration" in stop_line and "severity=P" in stop_line, stop_line
        assert seen_at - fired_at <= poll + 1.5
        print("PostgreSQL stopped -> %s firing after %.1f s -> soak stopped %.1f s later"
              % (sorted(names), fired_at - stopped_at, seen_at - fired_at))
        assert SECRET not in out
        texts = hook.texts()
        assert texts[0].startswith("[UPDATE] Migration Phase 0/3 - 🔄 In Progress"), texts
        issue = next(t for t in texts if "⚠️ Issue Detected" in t)
        assert named[0] in issue and "Consumer lag:" in issue and "Database writes:" in issue
        lab.finish_load(proc)
    report = lab.check_ledger(ledger, settle_s=60)
    assert report["lost"] == 0 and report["unexpected"] == 0, report
    print("ledger after the outage: sent %(sent)s, lost %(lost)s, duplicates %(duplicates)s" % report)


def test_rollback_and_a_clean_phase_send_their_messages(lab, tmp_path):
    wait_for(lambda: not firing(lab), 60)  # the outage's alerts resolve once inserts flow again
    with Receiver() as hook:
        back = phase0(tmp_path, "--tags", "rollback", "-e", "migration_notify_url=" + hook.url)
        out_back = back.communicate(timeout=120)[0]
        assert back.returncode == 0, out_back[-3000:]
        proc, _ledger = lab.start_load("mon%s" % uuid.uuid4().hex[:4], 180)  # stopped once the phase is done
        try:
            again = phase0(tmp_path, "-e", "migration_notify_url=" + hook.url)
            out = again.communicate(timeout=180)[0]
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
        assert again.returncode == 0, out[-3000:]
        assert SECRET not in out_back + out
        texts = hook.texts()
    assert [t.splitlines()[0] for t in texts] == [
        "[UPDATE] Migration Phase 0/3 - ↩️ Rolled Back",
        "[UPDATE] Migration Phase 0/3 - 🔄 In Progress",
        "[UPDATE] Migration Phase 0/3 - ✅ Complete"], texts
    complete = texts[-1]
    assert "Message processing: n/a" not in complete and "Database writes: n/a" not in complete, complete
    assert re.search(r"\d+\.\ds lag .* error rate [0-9.]+% stored [0-9.]+/min alerts none", out), out[-3000:]


def publish_twice(lab, event_id):
    """The same event under two message ids: JetStream stores both, normalize stores one row (a duplicate delivery)."""
    import nats

    async def run():
        nc = await nats.connect(lab.env["NATS_URL"].split(","), user=lab.env["NATS_USER"],
                                password=lab.env["NATS_PASSWORD"])
        try:
            js = nc.jetstream()
            body = json.dumps({"eventId": event_id, "userId": "dup-user", "date": "2026-01-01", "rmssd": 40.0}).encode()
            for msg_id in (uuid.uuid4().hex, uuid.uuid4().hex):
                await js.publish("athlete-ally.hrv.raw-received", body, headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()
    asyncio.run(run())


def test_every_dashboard_query_returns_series(lab):
    import build_dashboard
    publish_twice(lab, "dup-%s" % uuid.uuid4().hex[:8])
    # a shadow source and a journal entry, so the source-lag panel and the annotations have something to show
    res = lab.js("STREAM.CREATE.MON_SHADOW", {
        "name": "MON_SHADOW", "storage": "memory", "num_replicas": 1,
        "sources": [{"name": "ATHLETE_ALLY_EVENTS", "filter_subject": "vendor.>"}],
        "metadata": {"aa.migration.phase1.cutover_at": str(int(time.time()))}})
    assert "error" not in res, res
    try:
        data = json.loads(build_dashboard.render("lab"))
        exprs = build_dashboard.queries(data)
        assert len(data["panels"]) >= 5 and len(exprs) >= 6

        def empty():
            return [e for e in exprs if not prom(lab, "/api/v1/query", query=e)["result"]]
        wait_for(lambda: not empty(), 15)
        missing = empty()
        assert not missing, missing

        # the event delivered twice is one row and one duplicate delivery; Prometheus sees it at a later scrape
        def duplicate_deliveries():
            result = prom(lab, "/api/v1/query", query="sum(normalize_duplicate_deliveries_total)")["result"]
            return float(result[0]["value"][1]) if result else 0.0
        assert wait_for(lambda: duplicate_deliveries() >= 1, 15), \
            "normalize_duplicate_deliveries_total = %s" % duplicate_deliveries()
    finally:
        lab.js("STREAM.DELETE.MON_SHADOW")


def test_a_frozen_backlog_stays_quiet_and_a_growing_one_fires(lab):
    from tests.monitoring.frozen import frozen_quiet_then_growing_fires
    quiet, fired = frozen_quiet_then_growing_fires(lab, "nats_consumer_num_pending", "stream")
    print("frozen backlog of 150: quiet for %.0f s; growing: NatsConsumerLag firing after %.1f s" % (quiet, fired))


def test_stream_down_low_rate_and_dlq_growth_fire_within_a_lab_window(lab):
    """The lab's windows and for: durations let these alerts fire within seconds: traffic stops (stream down, low
    message rate) while dead letters keep arriving (DLQ growing)."""
    import nats
    proc, _ledger = lab.start_load("mon%s" % uuid.uuid4().hex[:4], 20)  # traffic in the lookback before
    lab.finish_load(proc)
    wanted = {"NatsStreamDown", "NormalizeLowMessageRate", "MigrationDlqGrowing"}
    stopped = time.monotonic()
    seen = {}

    async def dead_letter():
        nc = await nats.connect(lab.env["NATS_URL"].split(","), user=lab.env["NATS_USER"],
                                password=lab.env["NATS_PASSWORD"])
        try:
            await nc.jetstream().publish("dlq.montest.events", b"dead")
        finally:
            await nc.close()
    try:
        while time.monotonic() - stopped < 90 and not wanted <= set(seen):
            asyncio.run(dead_letter())
            for a in firing(lab):
                seen.setdefault(a["labels"]["alertname"], round(time.monotonic() - stopped, 1))
            time.sleep(0.5)
    finally:
        lab.js("STREAM.PURGE.AA_DLQ", {"filter": "dlq.montest.>"})
    assert wanted <= set(seen), seen
    print("after the load stopped (dead letters arriving): %s" % seen)
