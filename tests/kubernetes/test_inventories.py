"""The example production and staging inventories: runbook values, no secrets, and they drive the kubernetes
driver (namespace, per-deployment container) end to end against the fake API (fake_k8s.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.kubernetes.conftest import failure
from tests.kubernetes.fake_k8s import deployment
from tests.support.inventory import rendered

REPO = Path(__file__).resolve().parents[2]
INV = REPO / "inventories"


def group_vars(env):
    out = {}
    for f in sorted((INV / env / "group_vars" / "all").glob("*.yml")):
        out.update(yaml.safe_load(f.read_text()) or {})
    return out


@pytest.mark.parametrize("env", ["production", "staging"])
def test_inventory_has_the_lab_shape_and_runbook_values(env):
    lab, v = group_vars("lab"), group_vars(env)
    assert v["service_driver"] == "kubernetes"
    assert v["k8s_namespace"] == env
    # Same keys as the rehearsed lab migration data (the migration role reads only these).
    assert set(lab["migration"]) <= set(v["migration"]), set(lab["migration"]) - set(v["migration"])
    for key in ("nats_servers", "nats_user", "nats_password", "nats_system_user", "nats_system_password",
                "nats_cluster_size", "migration_endpoints"):
        assert key in v, key
    assert set(lab["migration_endpoints"]["database"]) == set(v["migration_endpoints"]["database"])
    m = rendered(env)  # as Ansible renders it: the topology parts name inventories/migration_topology.yml
    assert m["soak_seconds"] == {0: 15 * 60, 1: 30 * 60, 2: 60 * 60}  # runbook pauses 15m, 30m, 60m
    assert m["alerts"]["consumer_lag"] == 100 and m["alerts"]["consumer_lag_seconds"] == 600
    assert m["legacy"]["retention_seconds"] == 14 * 24 * 3600
    assert {g["stream"] for g in m["groups"]} == {"AA_VENDOR_HOT", "AA_CORE_HOT"}
    assert v["k8s_containers"]["normalize-service"] == "normalize"  # runbook: set image ... normalize=...
    assert len(v["nats_servers"]) == 3 and all(s.endswith(":4223") for s in v["nats_servers"])
    if env == "production":
        assert v["nats_servers"] == ["nats://nats1.prod:4223", "nats://nats2.prod:4223", "nats://nats3.prod:4223"]
        assert m["backup"] == {"type": "rds", "instance": "prod-athlete-db", "max_age": "6h"}  # runbook: < 6 hours old
    else:
        assert m["staging_binding_check"] is True


@pytest.mark.parametrize("env", ["production", "staging"])
def test_inventory_holds_no_secret(env):
    for f in (INV / env).rglob("*"):
        if not f.is_file():
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            m = re.match(r"^\s*([A-Za-z_]*(password|token|secret)[A-Za-z_]*)\s*:\s*(.+)$", line, re.I)
            if m:
                assert "{{" in m.group(3), "%s:%d literal secret? %s" % (f, n, line)
            assert not re.search(r"postgres(ql)?://[^\s{]*:[^\s{@]*@", line), "%s:%d credentials in URL" % (f, n)


@pytest.mark.parametrize("env", ["production", "staging"])
def test_inventory_drives_the_kubernetes_driver(driver, fake, env):
    """-i inventories/<env>/hosts.yml alone selects the kubernetes driver, the namespace and the container."""
    fake.settle_after = 0
    fake.add_deployment(deployment("normalize-service", env, replicas=2, container="normalize",
                                   env={"EVENT_STREAM_MODE": "single"}))
    res = driver.run([("set_env", {"driver_service": "normalize-service",
                                   "driver_env": {"EVENT_STREAM_MODE": "multi"}}),
                      ("status", {"driver_service": "normalize-service"})],
                     inventory=INV / env / "hosts.yml",
                     # staging: AA_KUBECONFIG/AA_KUBE_CONTEXT unset, so the inventory omits both and the client
                     # falls back to $KUBECONFIG and its current-context
                     plain_kubeconfig=(env == "staging"))
    assert res.rc == 0, failure(res)
    assert [(p["path"], p["body"]["spec"]["template"]["spec"]["containers"]) for p in fake.patches] == [
        ("/apis/apps/v1/namespaces/%s/deployments/normalize-service" % env,
         [{"name": "normalize", "env": [{"name": "EVENT_STREAM_MODE", "value": "multi"}]}])]
    assert res.task("out 1")["msg"]["driver_status"]["env"] == {"EVENT_STREAM_MODE": "multi"}
