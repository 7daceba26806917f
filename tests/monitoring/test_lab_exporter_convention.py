"""The second exporter convention on the real lab: lab/exporter.py emits prometheus-nats-exporter's names
(AA_LAB_EXPORTER, inherited by the lab's supervisord), the rules are rendered for them, and phases 0 and 1 run under
load with their Prometheus soak windows (which refuse to start blind: rules loaded, series present). After phase 1's
cut-over the legacy stream's superseded consumer never fires NatsConsumerLag; nothing is lost."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from lab.ansible_run import REPO, run_playbook_file
from tests.support.polling import wait_for
from tests.support.prometheus_api import prom

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CONVENTION = "prometheus-nats-exporter"


@pytest.fixture(scope="module")
def nats_exporter_lab(request):
    """The module's lab, brought up with the exporter convention in the environment (restored afterwards)."""
    before = os.environ.get("AA_LAB_EXPORTER")
    os.environ["AA_LAB_EXPORTER"] = CONVENTION
    try:
        yield request.getfixturevalue("lab")
    finally:
        if before is None:
            os.environ.pop("AA_LAB_EXPORTER", None)
        else:
            os.environ["AA_LAB_EXPORTER"] = before


def series(lab, selector):
    return prom(lab, "/api/v1/query", query=selector)["result"]


def play(name, *args):
    res = run_playbook_file(REPO / "playbooks" / name, list(args), timeout=600)
    failed = [(t["_name"], t.get("msg")) for t in res.tasks if t.get("failed")]
    assert res.rc == 0, "%s failed: %s\n%s" % (name, failed, res.stdout[-3000:] + res.stderr[-2000:])
    return res


def soak_lines(res):
    task = next(t for t in res.tasks if "migration : Soak window - " in t["_name"] and not t.get("skipped"))
    return task["lines"]


def lag_firing_on(lab, stream):
    return [a for a in prom(lab, "/api/v1/alerts")["alerts"]
            if a["labels"].get("alertname") == "NatsConsumerLag" and a["state"] == "firing"
            and a["labels"].get("stream_name") == stream]


def test_phases_run_with_their_soaks_under_prometheus_nats_exporter_names(nats_exporter_lab):
    lab = nats_exporter_lab
    # the exporter speaks the second convention only: the surveyor names the rules would otherwise read are absent
    assert wait_for(lambda: series(lab, "jetstream_consumer_num_pending"), 30, interval=0.25)
    assert not series(lab, "nats_consumer_num_pending") and not series(lab, "nats_stream_last_seq")
    rules = [r for g in prom(lab, "/api/v1/rules")["groups"] for r in g["rules"]]
    assert "MigrationSourceLagNotShrinking" in {r["name"] for r in rules}  # the exporter reports stream sources
    assert all("nats_consumer" not in r["query"] for r in rules), [r["query"] for r in rules]

    proc, ledger = lab.start_load("conv%s" % uuid.uuid4().hex[:4], 150)
    try:
        play("preflight.yml")
        p0 = play("phase0.yml")
        p1 = play("phase1.yml")
        cut_at = time.monotonic()
        for res in (p0, p1):
            lines = soak_lines(res)
            assert lines and all(" stored " in line and "alerts none" in line for line in lines), lines
        print("phase 1 soak under %s names:\n%s" % (CONVENTION, "\n".join(soak_lines(p1))))
        legacy = "ATHLETE_ALLY_EVENTS"  # the lab inventory's migration.legacy.stream
        # the superseded legacy consumer (normalize-oura on the legacy stream) holds a frozen backlog: it must stay
        # quiet through the lag rule's for: and window after the cut-over (lab: 6 s + 3 s), read at every evaluation
        quiet_until = cut_at + 20
        while time.monotonic() < quiet_until:
            assert not lag_firing_on(lab, legacy), lag_firing_on(lab, legacy)
            time.sleep(0.5)
        pending = series(lab, 'jetstream_consumer_num_pending{stream_name="%s",consumer_name="normalize-oura"}'
                         % legacy)
        print("legacy normalize-oura pending after the cut-over: %s" % [p["value"][1] for p in pending])
    finally:
        lab.finish_load(proc, timeout=300)
    report = lab.check_ledger(ledger, settle_s=60)
    assert report["lost"] == 0 and report["unexpected"] == 0, {k: v for k, v in report.items() if "_ids" not in k}


def test_a_frozen_backlog_stays_quiet_and_a_growing_one_fires(nats_exporter_lab):
    from tests.monitoring.frozen import frozen_quiet_then_growing_fires
    quiet, fired = frozen_quiet_then_growing_fires(nats_exporter_lab, "jetstream_consumer_num_pending", "stream_name")
    print("frozen backlog of 150: quiet for %.0f s; growing: NatsConsumerLag firing after %.1f s" % (quiet, fired))
