"""playbooks/awx_configure.yml without an AWX server: syntax check (ansible-lint --profile production covers it in
tests/test_quality.py, which lints the whole tree: a second lint here cost 2-3 minutes), and every
awx.awx module call's keys checked against that module's documented options (ansible-doc -j); the data file's
workflow and templates hang together (each edge names a node, each node a template, each failure edge a rollback)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from lab.ansible_run import BIN, REPO, playbook_env

PLAYBOOK = REPO / "playbooks" / "awx_configure.yml"
DATA = yaml.safe_load((REPO / "awx" / "controller.yml").read_text())


def awx_calls():
    calls = []
    for play in yaml.safe_load(PLAYBOOK.read_text()):
        for name, args in (play.get("module_defaults") or {}).items():
            calls.append(("module_defaults", name, args))
        for task in play.get("tasks", []):
            for key, args in task.items():
                if key.startswith("awx.awx."):
                    calls.append((task["name"], key, args))
    return calls


@pytest.fixture(scope="module")
def docs():
    modules = sorted(set(m for _t, m, _a in awx_calls() if not m.startswith("group/")))
    proc = subprocess.run([str(BIN / "ansible-doc"), "-j"] + modules, capture_output=True, text=True, timeout=300,
                          env=playbook_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def options(doc):
    opts = doc["doc"]["options"]
    return set(opts) | set(a for o in opts.values() for a in o.get("aliases") or [])


def test_every_awx_module_call_uses_documented_options(docs):
    calls = awx_calls()
    assert len([c for c in calls if c[0] != "module_defaults"]) >= 11
    for task, module, args in calls:
        if task == "module_defaults":  # group defaults: every awx.awx module takes the controller options
            for doc in docs.values():
                assert set(args) <= options(doc), (module, sorted(set(args) - options(doc)))
            continue
        unknown = set(args) - options(docs[module])
        assert not unknown, "%s (%s): %s are not options of %s" % (task, module, sorted(unknown), module)


def test_syntax_check():
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", str(PLAYBOOK),
                           str(REPO / "awx" / "emergency_rollback.yml")], capture_output=True, text=True,
                          env=playbook_env(), cwd=str(REPO), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_and_templates_hang_together():
    templates = dict((t["name"], dict(DATA["template_defaults"], **t)) for t in DATA["job_templates"])
    assert "inventory" not in DATA["template_defaults"] and "credential" not in DATA["template_defaults"]
    nodes = dict((n["id"], n) for n in DATA["workflow"]["nodes"])
    for node in nodes.values():
        assert ("template" in node) != ("approval" in node), node
        assert node.get("template", "Preflight") in templates, node
        for child in node.get("success", []) + node.get("failure", []):
            assert child in nodes, (node["id"], child)
    # The runbook's order, approvals at its go/no-go pauses.
    order, node = [], "preflight"
    while node:
        order.append(node)
        node = (nodes[node].get("success") or [None])[0]
    assert order == ["preflight", "phase0", "go_phase1", "phase1", "go_phase2", "phase2", "validate"]
    for phase in (0, 1, 2):
        rollback = nodes[nodes["phase%d" % phase]["failure"][0]]["template"]
        assert templates[rollback]["job_tags"] == "rollback"
        assert templates[rollback]["playbook"] == templates["Phase %d" % phase]["playbook"]
    for phase in (0, 1, 2, 3):
        rehearse = templates["Rehearse phase %d" % phase]
        assert rehearse["job_type"] == "check" and rehearse["diff_mode"] is True
        assert (REPO / rehearse["playbook"]).exists()
    survey = templates["Emergency rollback"]["survey"]["spec"][0]
    assert survey["required"] and survey["default"] == "" and survey["variable"] == "awx_rollback_confirm"
    assert "awx_rollback_confirm | default('') == 'ROLLBACK'" in (REPO / "awx" / "emergency_rollback.yml").read_text()


def test_credential_types_inject_what_modules_and_inventories_read():
    """Every env injector feeds a module option's fallback (args_common.py) or a lookup of the production and
    staging inventories; no type prefills an input; names carry a version (AWX refuses input changes in use)."""
    spec = (REPO / "plugins" / "module_utils" / "args_common.py").read_text()
    inventories = "".join(p.read_text() for env in ("production", "staging")
                          for p in sorted((REPO / "inventories" / env / "group_vars" / "all").glob("*.yml")))
    for ct in DATA["credential_types"]:
        assert ct["name"].rsplit(" ", 1)[1][0] == "v" and ct["name"].rsplit(" ", 1)[1][1:].isdigit(), ct["name"]
        assert not any("default" in f for f in ct["inputs"]["fields"]), ct["name"]
        for env in ct["injectors"].get("env", {}):
            assert '"%s"' % env in spec or "'%s'" % env in inventories, \
                "%s injects %s but no module option or inventory reads it" % (ct["name"], env)
        for var in ct["injectors"].get("extra_vars", {}):
            assert "%s: " % var in inventories, "%s injects %s, which no inventory uses" % (ct["name"], var)
    nats = next(t for t in DATA["credential_types"] if t["name"].startswith("NATS JetStream"))
    fields = dict((f["id"], f) for f in nats["inputs"]["fields"])
    assert {"tls_hostname", "system_user", "system_password"} <= set(fields)
    for secret in ("password", "token", "nkey_seed", "creds", "tls_key", "system_password"):
        assert fields[secret].get("secret"), secret


def test_every_environment_has_its_own_complete_credential_set():
    types = [e["credentials"] for e in DATA["environments"]]
    wanted = {"NATS JetStream v1", "Athlete Ally database v1", "OpenShift or Kubernetes API Bearer Token",
              "Amazon Web Services", "Athlete Ally monitoring v1"}
    for env in DATA["environments"]:
        assert sorted(c["type"] for c in env["credentials"]) == sorted(wanted), env["name"]
        assert all(env["name"] in c["name"] for c in env["credentials"]), env["name"]
        assert env["inventory"]["source_path"] == "inventories/%s/hosts.yml" % env["name"]
    names = [c["name"] for creds in types for c in creds]
    assert len(names) == len(set(names))
    # Credentials hold no secret: only the non-secret inputs of their type.
    secret = dict((t["name"], set(f["id"] for f in t["inputs"]["fields"] if f.get("secret")))
                  for t in DATA["credential_types"])
    secret.update({"Amazon Web Services": {"password", "security_token"},
                   "OpenShift or Kubernetes API Bearer Token": {"bearer_token", "ssl_ca_cert"}})
    for env in DATA["environments"]:
        for cred in env["credentials"]:
            assert not set(cred["inputs"]) & secret[cred["type"]], cred["name"]
