"""The migration's alert rules: rendered from each inventory by playbooks/monitoring_rules.yml, `promtool check
rules` on every rendering, and `promtool test rules` fixtures (tests/monitoring/migration-rules.test.yml) proving each
alert fires when it should and stays quiet when it should not, on the committed production rendering."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.ansible_run import REPO, run_playbook_file

HERE = Path(__file__).resolve().parent
COMMITTED = REPO / "monitoring" / "prometheus" / "migration-rules.yml"
ALERTS = {"NatsStreamDown", "NatsConsumerLag", "NormalizeHighErrorRate", "NormalizeDbDisconnect",
          "NormalizeLowMessageRate", "MigrationLegacyStillStoring", "MigrationDlqGrowing",
          "MigrationSourceLagNotShrinking"}


def promtool(*args):
    assert shutil.which("promtool"), "promtool missing: run `make setup` as root (apt-get install -y prometheus)"
    proc = subprocess.run(["promtool"] + list(args), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """inventory -> path of its rendering (one playbook run per inventory for the module)."""
    out = {}

    def render(inventory):
        if inventory not in out:
            dest = tmp_path_factory.mktemp(inventory) / "rules.yml"
            res = run_playbook_file(REPO / "playbooks" / "monitoring_rules.yml",
                                    ["-i", str(REPO / "inventories" / inventory), "-e", "monitoring_rules_dest=%s" % dest])
            assert res.rc == 0, res.stdout[-3000:] + res.stderr[-2000:]
            out[inventory] = dest
        return out[inventory]
    return render


@pytest.mark.parametrize("inventory", ["production", "staging", "lab"])
def test_each_inventory_renders_valid_rules_with_its_own_thresholds(inventory, rendered):
    path = rendered(inventory)
    rules = yaml.safe_load(path.read_text())
    by_name = {r["alert"]: r for r in rules["groups"][0]["rules"]}
    assert set(by_name) == ALERTS
    assert all(r["labels"]["runbook"] == "phase2-migration" for r in by_name.values())
    code, out = promtool("check", "rules", str(path))
    assert code == 0 and "SUCCESS: 8 rules found" in out, out
    lag = by_name["NatsConsumerLag"]
    if inventory == "lab":  # seconds, from the lab's migration.alerts
        assert lag["for"] == "6s" and "[10s]" in by_name["NormalizeHighErrorRate"]["expr"]
    else:  # the runbook: > 100 for 10 minutes, [5m] rates, DB inserts 0 for 10 minutes
        assert lag["for"] == "10m" and lag["expr"].rstrip().endswith("> 100")
        assert "[5m]" in by_name["NormalizeHighErrorRate"]["expr"] and by_name["NormalizeDbDisconnect"]["for"] == "10m"


def test_committed_rules_are_the_production_rendering(rendered):
    assert rendered("production").read_text() == COMMITTED.read_text(), \
        "monitoring/prometheus/migration-rules.yml is stale: run " \
        "ansible-playbook -i inventories/production playbooks/monitoring_rules.yml"


def test_promtool_fixtures_every_alert_fires_and_stays_quiet():
    fixtures = yaml.safe_load((HERE / "migration-rules.test.yml").read_text())
    tested = {t["alertname"] for group in fixtures["tests"] for t in group["alert_rule_test"] if t.get("exp_alerts")}
    quiet = {t["alertname"] for group in fixtures["tests"] for t in group["alert_rule_test"] if not t.get("exp_alerts")}
    assert tested == ALERTS and quiet == ALERTS  # a firing and a quiet case for every alert
    code, out = promtool("test", "rules", str(HERE / "migration-rules.test.yml"))
    assert code == 0 and "SUCCESS" in out, out
