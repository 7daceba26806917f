"""The migration's alert rules: rendered from each inventory by playbooks/monitoring_rules.yml (plugins/module_utils/
promql.py), `promtool check rules` on every rendering, and `promtool test rules` fixtures
(tests/monitoring/migration-rules.test.yml) proving each alert fires when it should and stays quiet when it should
not, for both JetStream exporters production may scrape. No production rule reads a lab-only series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.ansible_run import REPO, run_playbook_file

HERE = Path(__file__).resolve().parent
COMMITTED = REPO / "monitoring" / "prometheus" / "migration-rules.yml"
CORE = {"NatsStreamDown", "NatsConsumerLag", "NormalizeHighErrorRate", "NormalizeDbDisconnect",
        "NormalizeLowMessageRate", "MigrationDlqGrowing"}
SOURCE_LAG, MISROUTED = "MigrationSourceLagNotShrinking", "MigrationLegacyStillStoring"
# surveyor name -> prometheus-nats-exporter name (collector/jsz.go); nats_stream_source_lag is the fixture's stand-in
EXPORTER_NAMES = {"nats_consumer_num_pending": "jetstream_consumer_num_pending",
                  "nats_consumer_num_ack_pending": "jetstream_consumer_num_ack_pending",
                  "nats_stream_total_messages": "jetstream_stream_total_messages",
                  "nats_stream_last_seq": "jetstream_stream_last_seq",
                  "nats_stream_source_lag": "jetstream_stream_source_lag"}
EXPORTER_LABELS = {"stream": "stream_name", "source": "source_name"}
# renderings: (inventory, extra vars). The second: prometheus-nats-exporter plus the journal exporter.
EXPORTER = {"migration_metrics": {"exporter": "prometheus-nats-exporter", "journal_exporter": True, "service": {
    "handled": "normalize_hrv_messages_total", "processed": {"name": "normalize_messages_total",
                                                             "labels": {"result": "processed"}},
    "stored": {"name": "normalize_hrv_messages_total", "labels": {"result": "success"}}}}}


def promtool(*args):
    assert shutil.which("promtool"), "promtool missing: run `make setup` as root (apt-get install -y prometheus)"
    proc = subprocess.run(["promtool"] + list(args), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(inventory, extra vars name) -> path of its rendering (one playbook run each for the module)."""
    out = {}

    def render(inventory, extra=None):
        key = (inventory, extra)
        if key not in out:
            dest = tmp_path_factory.mktemp(inventory) / "rules.yml"
            args = ["-i", str(REPO / "inventories" / inventory), "-e", "monitoring_rules_dest=%s" % dest]
            if extra == "exporter":
                args += ["-e", json.dumps(EXPORTER)]
            res = run_playbook_file(REPO / "playbooks" / "monitoring_rules.yml", args)
            assert res.rc == 0, res.stdout[-3000:] + res.stderr[-2000:]
            out[key] = dest
        return out[key]
    return render


def alerts_of(path):
    return {r["alert"]: r for r in yaml.safe_load(path.read_text())["groups"][0]["rules"]}


@pytest.mark.parametrize("inventory", ["production", "staging", "lab"])
def test_each_inventory_renders_valid_rules_with_its_own_thresholds(inventory, rendered):
    path = rendered(inventory)
    by_name = alerts_of(path)
    expected = CORE | ({MISROUTED} if inventory == "lab" else set())
    assert set(by_name) == expected
    assert all(r["labels"]["runbook"] == "phase2-migration" for r in by_name.values())
    code, out = promtool("check", "rules", str(path))
    assert code == 0 and "SUCCESS: %d rules found" % len(expected) in out, out
    lag = by_name["NatsConsumerLag"]
    if inventory == "lab":  # seconds, from the lab's migration.alerts
        assert lag["for"] == "6s" and "[10s]" in by_name["NormalizeHighErrorRate"]["expr"]
    else:  # the runbook: > 100 for 10 minutes, [5m] rates, DB inserts 0 for 10 minutes
        assert lag["for"] == "10m" and "> 100" in lag["expr"]
        assert "[5m]" in by_name["NormalizeHighErrorRate"]["expr"] and by_name["NormalizeDbDisconnect"]["for"] == "10m"


def test_no_production_rule_reads_a_lab_only_series(rendered):
    for extra in (None, "exporter"):
        text = rendered("production", extra).read_text()
        exprs = " ".join(r["expr"] for r in alerts_of(rendered("production", extra)).values()
                         if r["alert"] != MISROUTED)  # the journal exporter's own alert, opt-in
        assert "aa_migration_" not in exprs and "normalize_db_inserts_total" not in text
    exporter = rendered("production", "exporter").read_text()
    assert "nats_consumer" not in exporter and "jetstream_consumer_num_pending{consumer_name=~" in exporter
    assert 'stream_name=~"AA_VENDOR_HOT|AA_CORE_HOT"' in exporter


def test_committed_rules_are_the_production_rendering(rendered):
    assert rendered("production").read_text() == COMMITTED.read_text(), \
        "monitoring/prometheus/migration-rules.yml is stale: run " \
        "ansible-playbook -i inventories/production playbooks/monitoring_rules.yml"


def translate(text):
    """A fixture series in surveyor's names as prometheus-nats-exporter writes it (the journal exporter's own series
    keep their names and labels)."""
    if text.split("{")[0] not in EXPORTER_NAMES:
        return text
    for old, new in EXPORTER_NAMES.items():
        text = re.sub(r"\b%s\b" % old, new, text)
    for old, new in EXPORTER_LABELS.items():
        text = re.sub(r"([{,])%s=" % old, r"\1%s=" % new, text)
    return text


def fixtures_for(rules_path, exporter):
    """The fixture file pointed at one rendering: groups of alerts it has not left out, names translated."""
    doc = yaml.safe_load((HERE / "migration-rules.test.yml").read_text())
    have = set(alerts_of(rules_path))
    doc["rule_files"] = [str(rules_path)]
    kept = []
    for group in doc["tests"]:
        if not {t["alertname"] for t in group["alert_rule_test"]} <= have:
            continue
        if exporter:
            for series in group["input_series"]:
                series["series"] = translate(series["series"])
            for case in group["alert_rule_test"]:
                for alert in case.get("exp_alerts") or [] if case["alertname"] != MISROUTED else []:
                    alert["exp_labels"] = {EXPORTER_LABELS.get(k, k): v for k, v in alert["exp_labels"].items()}
        kept.append(group)
    doc["tests"] = kept
    return doc


@pytest.mark.parametrize("extra", [None, "exporter"], ids=["nats-surveyor", "prometheus-nats-exporter"])
def test_promtool_fixtures_every_alert_fires_and_stays_quiet(extra, rendered, tmp_path):
    rules = rendered("production", extra)
    doc = fixtures_for(rules, extra == "exporter")
    cases = [t for group in doc["tests"] for t in group["alert_rule_test"]]
    tested = {t["alertname"] for t in cases if t.get("exp_alerts")}
    quiet = {t["alertname"] for t in cases if not t.get("exp_alerts")}
    assert tested == quiet == set(alerts_of(rules))  # a firing and a quiet case for every alert of the rendering
    if extra == "exporter":
        assert {SOURCE_LAG, MISROUTED} <= tested
    path = tmp_path / "fixtures.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, out = promtool("test", "rules", str(path))
    assert code == 0 and "SUCCESS" in out, out
