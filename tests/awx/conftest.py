"""One lab for the lab-based AWX tests (the tests/lab fixture), and the lab as an AWX job sees it: the lab
inventory plus awx/lab_credential_vars.yml, so the NATS connection comes only from the injected credential."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

# The shared lab fixture (one lab per module), imported so pytest finds it here.
from tests.lab.conftest import lab  # noqa: F401  # pylint: disable=unused-import
from lab.ansible_run import REPO

sys.path.insert(0, str(REPO))
from awx import runner  # noqa: E402


def lab_inventory():
    """The inventory the lab fixture used (a private lab's ANSIBLE_INVENTORY, else the repo's lab inventory)."""
    return Path(os.environ.get("ANSIBLE_INVENTORY") or REPO / "inventories" / "lab" / "hosts.yml")


@pytest.fixture(scope="module")
def awx_inventory(lab, tmp_path_factory):  # noqa: F811 - pytest fixture argument
    src = lab_inventory()
    dst = tmp_path_factory.mktemp("awx-inventory")
    shutil.copy(src, dst / "hosts.yml")
    (dst / "group_vars" / "all").mkdir(parents=True)
    for item in sorted((src.parent / "group_vars" / "all").iterdir()):
        (dst / "group_vars" / "all" / item.name).symlink_to(item.resolve())
    (dst / "group_vars" / "all" / "zzz_awx_credential.yml").symlink_to(REPO / "awx" / "lab_credential_vars.yml")
    (dst / "group_vars" / "all" / "zzzz_lab_dir.yml").write_text(yaml.safe_dump({"lab_dir": str(lab.dir)}))
    return dst / "hosts.yml"


@pytest.fixture(scope="module")
def credential(lab):  # noqa: F811
    """The NATS JetStream credential's inputs for the lab (what an operator types into AWX)."""
    return {"servers": lab.env["NATS_URL"], "user": lab.env["NATS_USER"], "password": lab.env["NATS_PASSWORD"]}


def snapshot(lab):  # noqa: F811
    """Streams (configs), their consumers (configs) and the services' env files."""
    streams = {}
    for name in sorted(lab.js("STREAM.NAMES").get("streams") or []):
        consumers = lab.js("CONSUMER.LIST." + name).get("consumers") or []
        streams[name] = {"config": lab.js("STREAM.INFO." + name)["config"],
                         "consumers": dict((c["name"], c["config"]) for c in consumers)}
    env = dict((p.name, p.read_text()) for p in sorted((lab.dir / "env.d").glob("*.env")))
    return {"streams": streams, "env": env}


def topology(snap):
    """What a rollback must restore: which stream owns which subjects, and which consumers read what."""
    return dict((name, {"subjects": sorted(s["config"].get("subjects") or []),
                        "consumers": sorted((c, cfg.get("filter_subject")) for c, cfg in s["consumers"].items())})
                for name, s in snap["streams"].items())


class Load(object):
    """Steady load until stopped (the workflow takes as long as it takes), then the loss ledger."""

    def __init__(self, lab, tmp_path):  # noqa: F811
        self.lab, self.ledger, self.stop = lab, tmp_path / "ledger.jsonl", tmp_path / "stop"
        cmd = [sys.executable, str(REPO / "lab" / "loadgen.py"), "--run-id", "awx%s" % uuid.uuid4().hex[:4],
               "--rate", str(lab.soak["rate_per_s"]), "--vendor-ratio", str(lab.soak["vendor_ratio"]),
               "--ledger", str(self.ledger), "--stop-file", str(self.stop), "--env", str(lab.dir / "env")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self):
        self.stop.touch()
        sent = self.lab.finish_load(self.proc, timeout=120)
        report = self.lab.check_ledger(self.ledger, settle_s=30)
        return sent, report


__all__ = ["runner", "snapshot", "topology", "Load", "lab_inventory"]
