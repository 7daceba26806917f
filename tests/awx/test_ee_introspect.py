"""The execution environment's final dependency set, as `ansible-builder introspect` computes it at image build:
the collection tarball plus the pinned dependency collections (the dev venv's `ansible` package ships exactly those
versions; the test checks), with the EE's own lists and its dependencies.exclude. It fails on a test-only Python
package and on a system package the UBI 9 base cannot install. No image is built (no container engine here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from lab.ansible_run import BIN, REPO

EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())
SHIPPED = REPO / ".venv" / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages" / "ansible_collections"

# bindep's view of the base image (UBI 9): the platform labels that select an entry, no profile (so [test] entries,
# which ansible-builder's bindep run leaves out, do not apply).
PLATFORM = {"platform:rpm", "platform:redhat", "platform:rhel", "platform:rhel-9", "platform:dnf"}
# Packages checked to be in the UBI 9 repositories (ubi-9-baseos / ubi-9-appstream), which is all a build without a
# Red Hat subscription can reach. A new system dependency must be checked there (`dnf info NAME` in the base image)
# before it is added here; anything else must go to dependencies.exclude.system.
UBI9 = {"openssl", "ca-certificates", "python3.11", "python3.11-pip", "git", "gcc", "python3.11-devel",
        "libpq", "krb5-libs", "tar", "gzip", "unzip"}
# Python packages that only test or develop a collection.
TEST_ONLY = re.compile(r"^(pytest.*|mock|coverage|tox|nox|molecule.*|ansible-lint|ansible-test|flake8|pylint|"
                       r"black|yamllint|testinfra|pytest-mock|hypothesis)$")


def name_of(requirement):
    return re.split(r"[\s<>=!~\[;#]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def bindep_applies(line):
    """Does a bindep line select a package on the base image (default profile)?"""
    match = re.search(r"\[([^\]]*)\]", line)
    if not match:
        return True
    labels = match.group(1).split()
    negative = set(x[1:] for x in labels if x.startswith("!"))
    positive = [x for x in labels if not x.startswith("!")]
    if negative & PLATFORM:
        return False
    platforms = [x for x in positive if x.startswith("platform:")]
    profiles = [x for x in positive if not x.startswith("platform:")]
    if profiles:  # profile-only entries (e.g. [test]) are installed only when that profile is asked for
        return False
    return not platforms or bool(set(platforms) & PLATFORM)


def requirement_lines(path):
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def problems(pip_lines, bindep_lines):
    out = []
    for line in pip_lines:
        if TEST_ONLY.match(name_of(line)):
            out.append("test-only Python package in the image: %s" % line)
    for line in bindep_lines:
        if bindep_applies(line) and name_of(line) not in UBI9:
            out.append("system package UBI 9 cannot install: %s" % line)
    return out


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    """The collections the EE gets: the tarball installed, the pinned dependency collections at their versions."""
    tmp = tmp_path_factory.mktemp("ee-introspect")
    build = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                            str(tmp / "dist"), str(REPO)], capture_output=True, text=True, timeout=120, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = next((tmp / "dist").glob("athlete_ally-nats-*.tar.gz"))
    inst = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p",
                           str(tmp / "c"), str(tarball)], capture_output=True, text=True, timeout=120, check=False)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    for req in EE["dependencies"]["galaxy"]["collections"]:
        if req.get("type") == "file":
            continue
        ns, name = req["name"].split(".")
        shipped = SHIPPED / ns / name
        version = json.loads((shipped / "MANIFEST.json").read_text())["collection_info"]["version"]
        assert version == req["version"], "%s: the EE pins %s, the dev venv has %s" % (req["name"], req["version"],
                                                                                       version)
        (tmp / "c" / "ansible_collections" / ns).mkdir(exist_ok=True)
        (tmp / "c" / "ansible_collections" / ns / name).symlink_to(shipped)
    return tmp


def introspect(tmp, exclude=True):
    deps = EE["dependencies"]
    cmd = [str(BIN / "ansible-builder"), "introspect", str(tmp / "c"), "--user-pip", str(REPO / deps["python"]),
           "--user-bindep", str(REPO / deps["system"]), "--write-pip", str(tmp / "pip.txt"),
           "--write-bindep", str(tmp / "bindep.txt")]
    if exclude:
        for kind, flag in (("python", "--exclude-pip-reqs"), ("system", "--exclude-bindep-reqs")):
            path = tmp / ("exclude-%s.txt" % kind)
            path.write_text("\n".join(deps["exclude"][kind]) + "\n")
            cmd += [flag, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return requirement_lines(tmp / "pip.txt"), requirement_lines(tmp / "bindep.txt")


def test_the_final_dependency_set_builds_on_ubi9_without_test_packages(collections):
    pip, bindep = introspect(collections)
    assert problems(pip, bindep) == []
    names = set(name_of(p) for p in pip)
    assert {"nats-py", "nkeys", "kubernetes", "psycopg2-binary", "boto3"} <= names  # what the migration runs on
    assert any(name_of(b) == "openssl" for b in bindep)


def test_without_the_excludes_the_check_fails(collections):
    """The check is real: the collections as published bring openshift-clients and pytest-mock."""
    found = problems(*introspect(collections, exclude=False))
    assert any("openshift-clients" in p for p in found), found
    assert any("pytest-mock" in p for p in found), found


def test_base_image_is_pinned():
    image = EE["images"]["base_image"]["name"]
    assert "@sha256:" in image or re.search(r":\d[\w.-]*$", image), image
    assert not image.endswith(":latest")
