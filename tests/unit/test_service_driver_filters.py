"""service_driver filters: the env file format, env patches and rollout state the role's drivers compute."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.athlete_ally.nats.plugins.filter import service_driver as sd  # noqa: E402

ENV_FILE = (
    "# Environment of normalize-service (read at start; change it with service_driver set_env)\n"
    "EVENT_STREAM_MODE=single\n"
    "\n"
    "   # an indented comment\n"
    "  SPACED_KEY = kept as is  \n"
    "QUOTED=\"a b\"\n"
    "URL=postgres://u:p@h/db?sslmode=require&a=b\n"
    "EMPTY=\n"
    "#COMMENTED=1\n"
)


# ---- env files: the filters wrap module_utils/env_file.py (its format: tests/unit/test_env_file.py) ---------------

def test_env_file_parse_reads_the_format():
    assert sd.env_file_parse(ENV_FILE) == {
        "EVENT_STREAM_MODE": "single",
        "SPACED_KEY": " kept as is  ",  # only the key is trimmed
        "QUOTED": "\"a b\"",  # quotes are part of the value
        "URL": "postgres://u:p@h/db?sslmode=require&a=b",  # split at the first '=' only
        "EMPTY": "",
    }


@pytest.mark.parametrize("text", ["", None, "\n\n", "# only a comment\n"])
def test_env_file_parse_empty(text):
    assert sd.env_file_parse(text) == {}


def test_env_file_parse_refuses_a_line_that_is_not_key_value_as_a_filter_error():
    with pytest.raises(AnsibleFilterError) as err:
        sd.env_file_parse("A=1\nno equals sign here\n")
    assert str(err.value).startswith("env_file_parse: env file line 2: 'no equals sign here' is not KEY=VALUE")


def test_env_merge_sets_text_and_null_removes():
    current = {"A": "1", "LOG_LEVEL": "info"}
    merged = sd.env_merge(current, {"A": "2", "LOG_LEVEL": None, "NEVER_SET": None, "FLAG": True, "N": 60000,
                                    "L": [1, "x"], "D": {"k": 1}, "F": 0.5})
    assert merged == {"A": "2", "FLAG": "true", "N": "60000", "L": "[1, \"x\"]", "D": "{\"k\": 1}", "F": "0.5"}
    assert current == {"A": "1", "LOG_LEVEL": "info"}  # not modified in place


def test_env_merge_unchanged_env_is_equal():
    current = sd.env_file_parse(ENV_FILE)
    assert sd.env_merge(current, {"EVENT_STREAM_MODE": "single"}) == current
    assert sd.env_merge(current, {}) == current and sd.env_merge(current, None) == current


def test_env_file_render_sorts_case_insensitively_with_header():
    text = sd.env_file_render({"b": "2", "A": "1", "C": "x=y", "D": "\"q\""}, "normalize-service")
    assert text == ("# Environment of normalize-service (read at start; change it with service_driver set_env)\n"
                    "A=1\nb=2\nC=x=y\nD=\"q\"\n")


def test_env_file_render_empty_env_is_the_header_only():
    assert sd.env_file_render({}, "svc") == (
        "# Environment of svc (read at start; change it with service_driver set_env)\n")


def test_env_file_round_trips():
    env = sd.env_merge(sd.env_file_parse(ENV_FILE), {"NEW": "a=b", "FLAG": False})
    assert sd.env_file_parse(sd.env_file_render(env, "svc")) == env


@pytest.mark.parametrize("env", [{"A": "line1\nline2"}, {"A=B": "1"}, {"A\nB": "1"}, {"A": "x\ry"}])
def test_env_file_render_refuses_what_would_not_read_back(env):
    with pytest.raises(AnsibleFilterError) as err:
        sd.env_file_render(env, "svc")
    assert str(err.value).startswith("env_file_render: ") and "cannot be one KEY=VALUE line" in str(err.value)


# ---- logs ---------------------------------------------------------------------------------------------------------

def test_lines_since_start_keeps_the_current_run_only():
    log = "old 1\n=== service starting (pid 1)\nold 2\n=== service starting (pid 2)\nnew 1\nnew 2\nnew 3\n"
    assert sd.lines_since_start(log, 200) == ["=== service starting (pid 2)", "new 1", "new 2", "new 3"]
    assert sd.lines_since_start(log, 2) == ["new 2", "new 3"]
    assert sd.lines_since_start(log, "2") == ["new 2", "new 3"]


def test_lines_since_start_without_marker_and_empty():
    assert sd.lines_since_start("a\nb\nc", 2) == ["b", "c"]
    assert sd.lines_since_start("", 5) == [] and sd.lines_since_start(None, 5) == []
    assert sd.lines_since_start("a\nb", 0) == ["a", "b"]  # 0: no limit, like the former Jinja slice


# ---- Kubernetes -----------------------------------------------------------------------------------------------------

def deployment(containers, **status):
    return {"metadata": {"name": "normalize-service", "generation": status.pop("generation", 1)},
            "spec": {"replicas": status.pop("spec_replicas", 2), "template": {"spec": {"containers": containers}}},
            "status": status}


@pytest.mark.parametrize("containers, container, name", [
    ({"ingest-service": "ingest"}, "normalize", "ingest"),  # the per-deployment map wins
    ({"other": "x"}, "normalize", "normalize"),  # then the inventory-wide container
    ({}, None, "ingest-service"),  # else the deployment's own name
    (None, "", "ingest-service"),
])
def test_k8s_container_name(containers, container, name):
    assert sd.k8s_container_name("ingest-service", containers, container) == name


def test_k8s_container_selects_by_name():
    d = deployment([{"name": "sidecar", "image": "s"}, {"name": "ingest", "image": "i"}])
    assert sd.k8s_container(d, "ingest") == {"name": "ingest", "image": "i"}
    assert sd.k8s_container(d, "nope") is None
    assert sd.k8s_container({}, "ingest") is None and sd.k8s_container(None, "ingest") is None


def test_k8s_env_value_from_is_null_and_bare_entry_is_empty():
    container = {"name": "c", "env": [{"name": "A", "value": "1"},
                                      {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                                      {"name": "EMPTY"}]}
    assert sd.k8s_env(container) == {"A": "1", "DB": None, "EMPTY": ""}
    assert sd.k8s_env({"name": "c"}) == {} and sd.k8s_env(None) == {}


def test_k8s_env_patch_lists_every_wanted_var():
    current = {"EVENT_STREAM_MODE": "single", "LOG_LEVEL": "info", "DB": None}
    wanted = {"EVENT_STREAM_MODE": "single", "AA_STREAM_CANDIDATES": "X", "FLAG": True, "ACK_WAIT_MS": 60000,
              "DB": "postgres://placeholder", "LOG_LEVEL": None, "NEVER_SET": None}
    assert sd.k8s_env_patch(current, wanted) == [
        {"name": "EVENT_STREAM_MODE", "value": "single"},
        {"name": "AA_STREAM_CANDIDATES", "value": "X"},
        {"name": "FLAG", "value": "true"},
        {"name": "ACK_WAIT_MS", "value": "60000"},
        {"name": "DB", "value": "postgres://placeholder", "valueFrom": None},
        {"name": "LOG_LEVEL", "$patch": "delete"},
    ]
    assert sd.env_changes(current, wanted) == ["AA_STREAM_CANDIDATES", "FLAG", "ACK_WAIT_MS", "DB", "LOG_LEVEL"]


def test_unchanged_env_means_no_change():
    current = {"EVENT_STREAM_MODE": "single", "LOG_LEVEL": "info", "N": "3", "FLAG": "true"}
    assert sd.env_changes(current, {"EVENT_STREAM_MODE": "single", "N": 3, "FLAG": True, "GONE": None}) == []
    assert sd.env_changes(current, {}) == [] and sd.env_changes({}, None) == []
    # a variable set through valueFrom always differs from a literal value
    assert sd.env_changes({"DB": None}, {"DB": "x"}) == ["DB"]


def test_k8s_container_patch_touches_one_container_only():
    env = [{"name": "A", "value": "1"}]
    assert sd.k8s_container_patch("ingest-service", "production", "ingest", env=env) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ingest-service", "namespace": "production"},
        "spec": {"template": {"spec": {"containers": [{"name": "ingest", "env": env}]}}}}
    body = sd.k8s_container_patch("normalize-service", "production", "normalize-service", image="img:2")
    assert body["spec"] == {"template": {"spec": {"containers": [{"name": "normalize-service", "image": "img:2"}]}}}


@pytest.mark.parametrize("status, done", [
    (dict(generation=2, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=2), True),
    (dict(generation=2, observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=2), False),  # stale
    (dict(generation=2, observedGeneration=2, replicas=3, updatedReplicas=2, availableReplicas=2), False),  # old pod
    (dict(generation=2, observedGeneration=2, replicas=2, updatedReplicas=1, availableReplicas=2), False),
    (dict(generation=2, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=1), False),
    (dict(generation=1), False),  # no status yet
])
def test_k8s_rollout_done(status, done):
    generation = status.pop("generation")
    d = deployment([], generation=generation, **status)
    assert sd.k8s_rollout_done(d) is done


def test_k8s_rollout_done_scaled_to_zero_and_defaults():
    assert sd.k8s_rollout_done(deployment([], spec_replicas=0, observedGeneration=1)) is True
    # spec.replicas left out means 1 (the API default)
    assert sd.k8s_rollout_done({"metadata": {"generation": 1}, "spec": {},
                                "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                                           "availableReplicas": 1}}) is True
    assert sd.k8s_rollout_done({}) is False


def test_filters_are_registered():
    names = set(sd.FilterModule().filters())
    assert {"env_file_parse", "env_file_render", "env_merge", "env_changes", "k8s_env_patch",
            "k8s_container_patch", "k8s_rollout_done"} <= names
