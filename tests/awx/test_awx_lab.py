"""AWX without AWX, on one lab (in this order, each starting where the last ended):

- every "Rehearse phase N" job template, launched through ansible-runner as AWX would (check + diff), changes no
  stream, consumer or service env; a job gets its NATS connection only from the injected credential (a wrong
  password in the credential fails the job); the Emergency rollback refuses to run without the typed ROLLBACK;
  the workflows are the staging one ("Phase 2 migration (staging)"), the lab standing in for staging;
- the collection tarball, installed into an empty collections path, runs phase 0 from a venv built from exactly
  the execution environment's dependency lists, with no checkout of this repo on any path;
- the "Phase 2 migration" workflow under load with phase 1 made to fail (a soak alert it cannot pass) takes
  phase 1's failure edge to "Roll back phase 1": the topology is back, nothing lost;
- the workflow again, approvals auto-approved, runs the whole migration (phases 0-2, validate): nothing lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from tests.awx.conftest import Load, lab_inventory, runner, snapshot, topology
from lab.ansible_run import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())
DATA = runner.load()
# The soak windows watch consumer lag from JetStream, as tests/lab do: the lab's Prometheus rules (rates over 5m)
# fire on the idle gaps between these tests ("HRV processing below 1/min"), which is not what is tested here.
NO_PROMETHEUS = {"migration_prometheus_url": ""}
MIGRATION = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "migration.yml").read_text())


def launch(name, awx_inventory, credential, **kw):
    t0 = time.monotonic()
    job = runner.launch(name, awx_inventory, credential, data=DATA, **kw)
    print("%s: %s rc=%s changed=%s in %.1fs" % (name, job.status, job.rc, job.count("changed"), time.monotonic() - t0))
    return job


def test_rehearse_templates_change_nothing(lab, awx_inventory, credential):
    """Before the migration: phases 0-2 rehearse; phase 3 refuses (nothing was cut over) and changes nothing either.
    Rehearse phase 3 on the migrated lab: the last test."""
    before = snapshot(lab)
    for phase in (0, 1, 2):
        job = launch("Rehearse phase %d" % phase, awx_inventory, credential)
        assert job.ok, "Rehearse phase %d failed:\n%s" % (phase, job.stdout[-4000:])
        assert job.count("changed") > 0, "check mode should report what it would change"
        assert snapshot(lab) == before, "Rehearse phase %d changed the lab" % phase
    job = launch("Rehearse phase 3", awx_inventory, credential)
    assert not job.ok and "phase 3 needs every group cut over" in job.stdout, job.stdout[-3000:]
    assert snapshot(lab) == before


def test_job_takes_the_connection_from_the_credential_only(lab, awx_inventory, credential):
    wrong = dict(credential, password="not-the-lab-password")
    job = launch("Preflight", awx_inventory, wrong)
    assert not job.ok
    assert "refused the credentials (user/password" in job.stdout, job.stdout[-3000:]
    assert "not-the-lab-password" not in job.stdout


def test_emergency_rollback_needs_the_typed_word(lab, awx_inventory, credential):
    before = snapshot(lab)
    # The survey's answer is required: as AWX, the runner refuses the launch before any job (tests/awx/
    # test_runner_launch.py covers every refusal); eight characters that are not ROLLBACK pass the survey and
    # stop in the playbook's first play.
    with pytest.raises(SystemExit, match="'awx_rollback_confirm' value missing"):
        launch("Emergency rollback", awx_inventory, credential)
    job = launch("Emergency rollback", awx_inventory, credential, extra_vars={"awx_rollback_confirm": "rollback"})
    assert not job.ok and "type ROLLBACK" in job.stdout, job.stdout[-3000:]
    assert snapshot(lab) == before


def ee_venv(tmp_path):
    """A venv with exactly what the EE installs: ansible-core, ansible-runner and meta/ee-requirements.txt."""
    venv = tmp_path / "ee-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    deps = EE["dependencies"]
    cmd = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
           deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"],
           "-r", str(REPO / deps["python"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return venv


def test_tarball_runs_phase0_from_the_ee_dependency_set(lab, tmp_path):
    build = subprocess.run(["make", "-s", "collection"], cwd=str(REPO), capture_output=True, text=True, timeout=300,
                           check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = REPO / EE["additional_build_files"][0]["src"]
    venv = ee_venv(tmp_path)
    colls = tmp_path / "collections"
    # --force: a copy installed elsewhere (~/.ansible/collections) would make galaxy skip "already installed".
    inst = subprocess.run([str(venv / "bin" / "ansible-galaxy"), "collection", "install", "--no-deps", "--force",
                           "-p", str(colls), str(tarball)], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path), check=False)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    installed = colls / "ansible_collections" / "athlete_ally" / "nats"
    assert (installed / "playbooks" / "phase0.yml").exists() and not (installed / "tests").exists()
    # The EE's other galaxy requirements; no Galaxy here, so they come from the dev venv's ansible package.
    shipped = REPO / ".venv" / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages" / "ansible_collections"
    for req in EE["dependencies"]["galaxy"]["collections"]:
        if "." in req["name"] and "/" not in req["name"]:
            ns, name = req["name"].split(".")
            (colls / "ansible_collections" / ns).mkdir(exist_ok=True)
            (colls / "ansible_collections" / ns / name).symlink_to(shipped / ns / name)
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\ninterpreter_python = auto_silent\nretry_files_enabled = false\n")
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "NATS_", "VIRTUAL_ENV")))
    env.update({"ANSIBLE_CONFIG": str(cfg), "ANSIBLE_COLLECTIONS_PATH": str(colls), "AA_LAB_DIR": str(lab.dir),
                "PATH": "%s:/usr/bin:/bin" % (venv / "bin"), "ANSIBLE_NOCOLOR": "1"})
    # The runbook's order: phase 0 refuses to start until a preflight has passed (the migration gate). The soak
    # watches consumer lag from JetStream, as the workflow tests below (NO_PROMETHEUS): this test is about the EE's
    # dependency set and the tarball, tests/lab about the Prometheus-watched windows.
    for playbook in ("athlete_ally.nats.preflight", "athlete_ally.nats.phase0"):
        t0 = time.monotonic()
        proc = subprocess.run([str(venv / "bin" / "ansible-playbook"), playbook, "-i", str(lab_inventory()),
                               "-e", json.dumps(NO_PROMETHEUS)],
                              capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600, check=False)
        elapsed = time.monotonic() - t0
        print("%s from the tarball in the EE venv: rc %s in %.1fs" % (playbook, proc.returncode, elapsed))
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
        assert str(REPO) not in proc.stdout + proc.stderr, "something resolved from the checkout"
    assert lab.js("STREAM.INFO.AA_DLQ")["config"]["name"] == "AA_DLQ"


def strict_soak():
    """The migration data with alerts no phase can pass: any backlog at all, for 0 s, is an alert."""
    migration = yaml.safe_load(yaml.safe_dump(MIGRATION["migration"]))
    migration["alerts"] = dict(migration["alerts"], consumer_lag=-1, consumer_lag_seconds=0)
    return migration


def test_failed_phase_takes_its_failure_edge_to_its_rollback(lab, awx_inventory, credential, tmp_path):
    before = topology(snapshot(lab))
    load = Load(lab, tmp_path)
    try:
        ran, ok = runner.run_workflow(awx_inventory, credential, approve=lambda node: True, data=DATA,
                                      extra_vars=NO_PROMETHEUS,
                                      node_extra_data={"phase1": {"migration": strict_soak()}})
    finally:
        sent, report = load.finish()
    steps = [(node, job if isinstance(job, str) else job.status) for node, job in ran]
    print(steps, sent, {k: v for k, v in report.items() if "_ids" not in k})
    assert steps == [("preflight", "successful"), ("phase0", "successful"), ("go_phase1", "approved"),
                     ("phase1", "failed"), ("rollback1", "successful")], steps
    assert ok, "a failure handled by its failure edge leaves the workflow successful"
    assert "consumer" in dict(ran)["phase1"].stdout and "lag" in dict(ran)["phase1"].stdout
    # Phase 0 passed and stays (its DLQ whether or not an earlier test made it); phase 1 is undone.
    dlq = MIGRATION["migration"]["dlq"]["stream"]
    after = topology(snapshot(lab))
    assert dlq in after and dict(after, **{dlq: None}) == dict(before, **{dlq: None}), (before, after)
    assert report["lost"] == 0 and report["unexpected"] == 0, report


def test_workflow_runs_the_whole_migration(lab, awx_inventory, credential, tmp_path):
    load = Load(lab, tmp_path)
    t0 = time.monotonic()
    try:
        # Soak windows of 0 s (one look each): they are tested in tests/lab; here the workflow is (budget).
        ran, ok = runner.run_workflow(awx_inventory, credential, approve=lambda node: True, data=DATA,
                                      extra_vars=dict(NO_PROMETHEUS, migration_soak_seconds=0))
    finally:
        sent, report = load.finish()
    steps = [(node, job if isinstance(job, str) else job.status) for node, job in ran]
    figures = {k: v for k, v in report.items() if "_ids" not in k}
    print("workflow in %.1fs: %s; load %s; ledger %s" % (time.monotonic() - t0, steps, sent, figures))
    assert ok and steps == [("preflight", "successful"), ("phase0", "successful"), ("go_phase1", "approved"),
                            ("phase1", "successful"), ("go_phase2", "approved"), ("phase2", "successful"),
                            ("validate", "successful")], steps
    legacy = lab.js("STREAM.INFO.ATHLETE_ALLY_EVENTS")["config"]
    assert not set(legacy.get("subjects") or []) & {"vendor.>", "athlete-ally.>", "sleep.*"}, legacy
    assert report["lost"] == 0 and report["unexpected"] == 0, report
    migrated = snapshot(lab)
    job = launch("Rehearse phase 3", awx_inventory, credential)
    assert job.ok, job.stdout[-4000:]
    assert snapshot(lab) == migrated, "Rehearse phase 3 changed the lab"
