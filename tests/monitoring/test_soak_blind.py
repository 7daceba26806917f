"""A soak cannot pass blind against a real Prometheus: migration_soak through ansible-playbook (PromQL from the
production inventory's migration_metrics) refuses, in one line and before its window, a Prometheus that answers but
has none of the migration's rules, and one that has the rules but none of the series they read (no targets)."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest

from lab.ansible_run import REPO, run_playbook_file, run_tasks
from lab.nats_cluster import free_ports
from tests.support.polling import wait_for

PRODUCTION = ["-i", str(REPO / "inventories" / "production")]


def ready(url):
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def prometheus(tmp_path):
    """start(rule_file or None) -> URL of a Debian prometheus on a free port, scraping nothing."""
    assert shutil.which("prometheus"), "prometheus missing: run `make setup` as root (apt-get install -y prometheus)"
    procs = []

    def start(rules=None):
        port = free_ports(1)[0]
        config = tmp_path / ("prometheus-%d.yml" % port)
        config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                          + ("rule_files: [%s]\n" % rules if rules else ""))
        procs.append(subprocess.Popen(
            ["prometheus", "--config.file=%s" % config, "--storage.tsdb.path=%s" % (tmp_path / ("data-%d" % port)),
             "--web.listen-address=127.0.0.1:%d" % port, "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = "http://127.0.0.1:%d" % port
        assert wait_for(lambda: ready(url), 30, interval=0.2), "prometheus did not become ready"
        return url
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def soak(cluster, url):
    required = ("migration | athlete_ally.nats.migration_queries(migration_monitoring, migration_metrics, "
                "'required')")
    task = {"name": "soak", "register": "out", "vars": {"req": "{{ %s }}" % required},
            "athlete_ally.nats.migration_soak": {
                "prometheus_url": url, "seconds": 2, "poll": 1,
                "status_queries": "{{ migration | athlete_ally.nats.migration_queries(migration_monitoring, "
                                  "migration_metrics, 'status') }}",
                "alerts": "{{ req.alerts }}", "required_series": "{{ req.series }}",
                "traffic_query": "{{ req.traffic }}"}}
    res = run_tasks([task], servers=cluster.url, args=PRODUCTION)
    assert res.rc != 0, res.stdout[-2000:]
    return res.task("soak")


def test_a_prometheus_without_the_migration_rules_refuses_the_soak(cluster, prometheus):
    out = soak(cluster, prometheus())
    assert out["msg"].startswith("soak refused before the window: Prometheus at http://127.0.0.1:")
    assert "has no rule group 'phase2-migration' loaded (/api/v1/rules: none)" in out["msg"]
    assert "\n" not in out["msg"] and out["polls"] == []


def test_a_prometheus_with_the_rules_but_without_their_series_refuses_the_soak(cluster, prometheus, tmp_path):
    rules = tmp_path / "rules.yml"
    res = run_playbook_file(REPO / "playbooks" / "monitoring_rules.yml",
                            PRODUCTION + ["-e", "monitoring_rules_dest=%s" % rules])
    assert res.rc == 0, res.stdout[-2000:]
    out = soak(cluster, prometheus(rules))
    msg = out["msg"]
    assert msg.startswith("soak refused before the window: no series nats_stream_last_seq{stream=~"), msg
    assert "nats_consumer_num_pending{consumer_name=~" in msg and 'nats_stream_total_messages{stream="AA_DLQ"}' in msg
    assert "scrape the exporter and service named in migration_metrics" in msg and "\n" not in msg
    assert out["polls"] == []


def test_the_go_no_go_check_refuses_a_prometheus_without_the_rules(cluster, prometheus):
    url = prometheus()
    task = {"name": "ready", "ansible.builtin.include_role": {"name": "athlete_ally.nats.migration",
                                                              "tasks_from": "prometheus_ready"},
            "vars": {"migration_prometheus_url": url}}
    res = run_tasks([task], servers=cluster.url, args=PRODUCTION)
    failed = [t for t in res.tasks if t.get("failed")]
    assert res.rc != 0 and len(failed) == 1, res.stdout[-2000:]
    assert failed[0]["msg"].startswith("soak refused before the window: Prometheus at %s has no rule group" % url)
