"""awx/runner.py refuses what AWX refuses and follows AWX's workflow rules, with real ansible-runner jobs (stand-in
playbooks in tests/awx/playbooks, no lab): survey answers (required, min/max, choices), variables a template does
not ask for, a staging credential in the production workflow, a denied approval taking its failure edge; and a job
runs the collection the project sync installed from collections/requirements.yml (this commit), not another copy."""

from __future__ import annotations

import copy
import filecmp
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from lab.ansible_run import BIN, REPO

sys.path.insert(0, str(REPO))
from awx import runner  # noqa: E402

DATA = runner.load()
NATS = {"servers": "nats://127.0.0.1:1"}


def stand_in(data=DATA):
    """The controller data with every template's playbook replaced by the stand-in job."""
    data = copy.deepcopy(data)
    for jt in data["job_templates"]:
        jt["playbook"] = "tests/awx/playbooks/job.yml"
    return data


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "hosts"
    path.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    return path


def survey(**question):
    base = {"question_name": "q", "variable": "answer", "type": "text", "required": True, "default": ""}
    return {"name": "T", "survey": {"spec": [dict(base, **question)]}, "ask_variables_on_launch": False}


@pytest.mark.parametrize("jt, answers, refusal", [
    (survey(), {}, "'answer' value missing"),
    (survey(min=8, max=8), {"answer": "ROLL"}, "too short"),
    (survey(min=8, max=8), {"answer": "ROLLBACK!"}, "too long"),
    (survey(type="integer", min=1, max=3, default=2), {"answer": 4}, "outside 1..3"),
    (survey(type="multiplechoice", choices=["a", "b"]), {"answer": "c"}, "not one of a, b"),
    (survey(required=False), {"other": "x"}, "variables other are not allowed on launch"),
])
def test_launch_refuses_what_awx_refuses(jt, answers, refusal):
    with pytest.raises(SystemExit, match=re.escape(refusal)):
        runner.launch_vars(jt, answers)


def test_launch_accepts_valid_answers_and_asked_variables():
    assert runner.launch_vars(survey(min=8, max=8), {"answer": "ROLLBACK"}) == {"answer": "ROLLBACK"}
    assert runner.launch_vars(survey(required=False), {}) == {"answer": ""}
    assert runner.launch_vars(dict(survey(), ask_variables_on_launch=True), {"answer": "x", "y": 1}) == \
        {"answer": "x", "y": 1}


def test_emergency_rollback_refuses_before_any_job(inventory):
    with pytest.raises(SystemExit, match="'awx_rollback_confirm' value missing"):
        runner.launch("Emergency rollback", inventory, NATS, data=DATA)
    with pytest.raises(SystemExit, match="not allowed on launch"):
        runner.launch("Emergency rollback", inventory, NATS, data=DATA,
                      extra_vars={"awx_rollback_confirm": "ROLLBACK", "migration_soak_seconds": 0})


def test_production_workflow_refuses_a_staging_credential(inventory):
    with pytest.raises(SystemExit, match="Database staging are not production credentials"):
        runner.run_workflow(inventory, NATS, data=DATA, environment_name="production",
                            credentials={"Database staging": {"password": "x"}})


def test_denied_approval_takes_its_failure_edge(inventory):
    data = stand_in()
    denied = []

    def approve(node):
        denied.append(node["id"])
        return False

    ran, ok = runner.run_workflow(inventory, NATS, approve=approve, data=data, log=lambda _m: None,
                                  credentials={"Database staging": {"password": "pw"}},
                                  extra_vars={"migration_soak_seconds": 0})
    steps = [(node, job if isinstance(job, str) else job.status) for node, job in ran]
    assert steps == [("preflight", "successful"), ("phase0", "successful"), ("go_phase1", "denied"),
                     ("rollback0", "successful")], steps
    assert denied == ["go_phase1"]
    assert ok, "a denied approval with a failure edge is handled (AWX: the workflow succeeds)"
    # Every job got the staging credentials' injected values (non-secret inputs from awx/controller.yml).
    assert "AA_DB_HOST=staging-athlete-db.invalid" in dict(ran)["phase0"].stdout
    assert "NATS_URL=nats://127.0.0.1:1" in dict(ran)["phase0"].stdout


def test_failed_node_without_failure_edge_fails_the_workflow(inventory):
    data = stand_in()
    ran, ok = runner.run_workflow(inventory, NATS, approve=lambda node: True, data=data, log=lambda _m: None,
                                  extra_vars={"job_fail": True})
    assert [(n, j.status) for n, j in ran] == [("preflight", "failed")] and not ok
    # Validate does not ask for variables: node extra data for it is refused, as AWX refuses the node's prompt.
    with pytest.raises(SystemExit, match="Validate: variables job_fail are not allowed on launch"):
        runner.run_workflow(inventory, NATS, approve=lambda node: True, data=data, log=lambda _m: None,
                            node_extra_data={"validate": {"job_fail": True}})


def test_job_runs_the_collection_of_the_project_commit(inventory, tmp_path):
    """AWX's project sync: ansible-galaxy collection install -r collections/requirements.yml from the project's
    root into the sync's requirements_collections, first on the job's collections path."""
    synced = tmp_path / "requirements_collections"
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-r",
                           str(REPO / "collections" / "requirements.yml"), "-p", str(synced), "--force"],
                          cwd=str(REPO), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = synced / "ansible_collections" / "athlete_ally" / "nats"
    manifest = json.loads((installed / "MANIFEST.json").read_text())["collection_info"]
    assert manifest["version"] == yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    assert not (installed / "tests").exists() and not (installed / "lab").exists()
    data = copy.deepcopy(DATA)
    data["job_templates"].append({"name": "Which collection", "playbook": "tests/awx/playbooks/which_collection.yml"})
    job = runner.launch("Which collection", inventory, NATS, data=data, verbosity=3, collections_path=str(synced))
    used = re.findall(r"Using module file (\S+jetstream_info\.py)", job.stdout)
    assert used, job.stdout[-3000:]
    assert os.path.realpath(used[0]) == str(installed / "plugins" / "modules" / "jetstream_info.py"), used
    # Same commit: what ran is byte for byte this checkout's module and module_utils.
    for rel in ("plugins/modules/jetstream_info.py", "plugins/module_utils/args_common.py"):
        assert filecmp.cmp(str(installed / rel), str(REPO / rel), shallow=False), rel
