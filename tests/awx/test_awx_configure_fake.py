"""playbooks/awx_configure.yml with the real awx.awx modules against a FAKE controller API (tests/awx/fake_awx.py,
answering as AWX 24 does for the endpoints used; not AWX itself, see docs/AWX.md).

The fake first shows it reproduces the two AWX behaviours that broke the old playbook (the approval template's
404 on success_nodes, ansible/awx#8777; a credential update without the secrets erasing them, ansible/awx#13169).
Then the playbook converges: the first run creates everything, an operator types secrets into the credentials
(as the AWX UI does), the second run reports changed=false, and the secrets are untouched."""

from __future__ import annotations

import copy
import pytest
import yaml

from tests.awx.fake_awx import ENCRYPTED, FakeAWX
from lab.ansible_run import REPO, run_playbook_file, run_tasks

PLAYBOOK = REPO / "playbooks" / "awx_configure.yml"
DATA = yaml.safe_load((REPO / "awx" / "controller.yml").read_text())
TOKEN = "fake-admin-token"
SECRETS = {"NATS production": {"password": "prod-nats-Secret-1", "system_password": "prod-sys-Secret-2"},
           "Database production": {"password": "prod-db-Secret-3"},
           "NATS staging": {"password": "stg-nats-Secret-4"}}


def env(fake):
    return {"CONTROLLER_HOST": fake.url, "CONTROLLER_OAUTH_TOKEN": TOKEN}


def stats(result):
    assert result.data, result.stdout[-3000:] + result.stderr[-3000:]
    return result.data["stats"]["localhost"]


def failures(result):
    out = []
    for play in (result.data or {}).get("plays", []):
        for task in play["tasks"]:
            for host in task["hosts"].values():
                for res in host.get("results", [host]):
                    if res.get("failed"):
                        out.append("%s: %s" % (task["task"]["name"], res.get("msg")))
    return out


def changed_tasks(result):
    return ["%s (%s)" % (t["task"]["name"], h.get("item", "")) for play in result.data["plays"] for t in play["tasks"]
            for host in t["hosts"].values() for h in host.get("results", [host]) if h.get("changed")]


def type_in_secrets(fake):
    """What an operator does in the AWX UI: the form sends every input, $encrypted$ for secrets left as they are."""
    for name, secrets in SECRETS.items():
        (cred,) = fake.find("credentials", name=name)
        shown = fake.public("credentials", cred)["inputs"]
        code, _body = fake.route("PATCH", cred["url"], {}, {"inputs": dict(shown, **secrets)})
        assert code == 200


@pytest.fixture(scope="module")
def converged():
    # Pages of 2 (AWX's default is 25): every list and association the modules read spans several pages.
    with FakeAWX(TOKEN, page_size=2) as fake:
        first = run_playbook_file(PLAYBOOK, env=env(fake), timeout=900)
        assert first.rc == 0, failures(first) or first.stdout[-4000:] + first.stderr[-2000:]
        type_in_secrets(fake)
        fake.requests[:] = []
        second = run_playbook_file(PLAYBOOK, env=env(fake), timeout=900)
        yield fake, first, second


def test_fake_reproduces_the_approval_template_404():
    """The old way (edges given with approval_node) fails on AWX: the edges go to the approval template."""
    with FakeAWX(TOKEN) as fake:
        tasks = [{"awx.awx.workflow_job_template": {"name": "W", "organization": "O", "state": "present"}},
                 {"awx.awx.workflow_job_template_node": {"workflow_job_template": "W", "organization": "O",
                                                         "identifier": "next", "approval_node": {"name": "N"}}},
                 {"awx.awx.workflow_job_template_node": {
                     "workflow_job_template": "W", "organization": "O", "identifier": "gate",
                     "approval_node": {"name": "Gate"}, "success_nodes": ["next"]}}]
        fake.route("POST", "/api/v2/organizations/", {}, {"name": "O"})
        result = run_tasks(tasks, env=env(fake))
        assert result.rc != 0
        assert any("/workflow_approval_templates/" in f and "success_nodes" in f for f in failures(result)), \
            failures(result)


def test_fake_reproduces_secrets_erased_by_an_update():
    """update_secrets: false does not help when the input keys differ: AWX keeps only what is sent."""
    with FakeAWX(TOKEN) as fake:
        org = fake.route("POST", "/api/v2/organizations/", {}, {"name": "O"})[1]
        aws = fake.find("credential_types", name="Amazon Web Services")[0]["id"]
        fake.route("POST", "/api/v2/credentials/", {}, {"name": "C", "organization": org["id"],
                                                        "credential_type": aws,
                                                        "inputs": {"username": "AK", "password": "SK"}})
        result = run_tasks([{"awx.awx.credential": {"name": "C", "organization": "O",
                                                    "credential_type": "Amazon Web Services",
                                                    "inputs": {"username": "AK"}, "update_secrets": False}}],
                           env=env(fake))
        assert result.rc == 0, failures(result)
        assert fake.stored_inputs("C") == {"username": "AK"}  # the secret key is gone


def test_fake_refuses_input_changes_of_a_used_credential_type(tmp_path):
    """Why the custom types carry a version in their name: a new input on a type in use is refused."""
    nats = DATA["credential_types"][0]
    with FakeAWX(TOKEN) as fake:
        org = fake.route("POST", "/api/v2/organizations/", {}, {"name": "O"})[1]
        ct = fake.route("POST", "/api/v2/credential_types/", {}, dict(nats, managed=False))[1]
        fake.route("POST", "/api/v2/credentials/", {}, {"name": "C", "organization": org["id"],
                                                        "credential_type": ct["id"], "inputs": {}})
        changed = copy.deepcopy(nats["inputs"])
        changed["fields"].append({"id": "jetstream_domain", "type": "string", "label": "JetStream domain"})
        # Read from a file as awx_configure.yml does, so the injectors' {{ }} reach AWX untemplated.
        (tmp_path / "ct.yml").write_text(yaml.safe_dump(dict(nats, inputs=changed)))
        ct_var = "(lookup('ansible.builtin.file', '%s') | from_yaml)" % (tmp_path / "ct.yml")
        result = run_tasks([{"awx.awx.credential_type": {
            "name": nats["name"], "kind": nats["kind"], "inputs": "{{ %s.inputs }}" % ct_var,
            "injectors": "{{ %s.injectors }}" % ct_var}}], env=env(fake))
        assert result.rc != 0 and any("permission" in f for f in failures(result)), failures(result)


def test_first_run_creates_everything(converged):
    fake, first, _second = converged
    assert stats(first)["changed"] > 0 and stats(first)["failures"] == 0
    for ct in DATA["credential_types"]:
        assert fake.find("credential_types", name=ct["name"], inputs=ct["inputs"], injectors=ct["injectors"])
    names = sorted(w["name"] for w in fake.objects["workflow_job_templates"].values())
    assert names == ["Phase 2 migration (production)", "Phase 2 migration (staging)"]
    assert len(fake.objects["workflow_job_template_nodes"]) == 2 * len(DATA["workflow"]["nodes"])
    assert len(fake.objects["job_templates"]) == len(DATA["job_templates"])
    # No template carries a default credential or inventory (a node gives its environment's).
    for jt in fake.objects["job_templates"].values():
        assert fake.links[("job_templates", jt["id"], "credentials")] == [] and not jt.get("inventory"), jt["name"]
    # Only the production and staging inventories are sourced from the project; never the lab's.
    paths = sorted(s["source_path"] for s in fake.objects["inventory_sources"].values())
    assert paths == ["inventories/production/hosts.yml", "inventories/staging/hosts.yml"]


def test_second_run_changes_nothing_and_keeps_the_secrets(converged):
    fake, _first, second = converged
    assert second.rc == 0, failures(second)
    assert stats(second)["changed"] == 0, changed_tasks(second)
    writes = [(m, p) for m, p, _q, _b in fake.requests if m != "GET"]
    assert writes == [], writes
    for name, secrets in SECRETS.items():
        stored = fake.stored_inputs(name)
        assert all(stored[k] == v for k, v in secrets.items()), name
    # The API never shows a secret: $encrypted$ in its place.
    (cred,) = fake.find("credentials", name="NATS production")
    assert fake.public("credentials", cred)["inputs"]["password"] == ENCRYPTED


def test_workflows_are_wired_as_the_data_says(converged):
    fake, _first, _second = converged
    nodes_by_wf = {}
    for node in fake.objects["workflow_job_template_nodes"].values():
        nodes_by_wf.setdefault(node["workflow_job_template"], {})[node["identifier"]] = node
    for env_data in DATA["environments"]:
        (wf,) = fake.find("workflow_job_templates", name="%s (%s)" % (DATA["workflow"]["name"], env_data["name"]))
        (inv,) = fake.find("inventories", name=env_data["inventory"]["name"])
        assert wf["inventory"] == inv["id"] and wf["ask_inventory_on_launch"] is False
        assert wf["ask_variables_on_launch"] is True
        nodes = nodes_by_wf[wf["id"]]
        for spec in DATA["workflow"]["nodes"]:
            node = nodes[spec["id"]]
            for edge in ("success", "failure"):
                linked = sorted(fake.objects["workflow_job_template_nodes"][i]["identifier"]
                                for i in fake.links[("workflow_job_template_nodes", node["id"], edge + "_nodes")])
                assert linked == sorted(spec.get(edge, [])), (env_data["name"], spec["id"], edge)
            if "approval" in spec:
                approval = fake.objects["workflow_approval_templates"][node["unified_job_template"]]
                assert approval["name"] == spec["approval"]["name"]
            else:
                (jt,) = fake.find("job_templates", name=spec["template"])
                assert node["unified_job_template"] == jt["id"]


def test_no_production_node_can_get_a_staging_credential(converged):
    fake, _first, _second = converged
    by_env = dict((e["name"], set(c["name"] for c in e["credentials"])) for e in DATA["environments"])
    assert not by_env["production"] & by_env["staging"]
    for env_name, expected in by_env.items():
        (wf,) = fake.find("workflow_job_templates", name="%s (%s)" % (DATA["workflow"]["name"], env_name))
        for node in fake.find("workflow_job_template_nodes", workflow_job_template=wf["id"]):
            creds = fake.links[("workflow_job_template_nodes", node["id"], "credentials")]
            got = set(fake.objects["credentials"][i]["name"] for i in creds)
            if node["identifier"].startswith("go_"):
                assert got == set(), node["identifier"]  # approvals run nothing
            else:
                assert got == expected, (env_name, node["identifier"], got)
        # The templates themselves carry none, so a node's set is all a job gets; launching a template alone
        # asks for credentials (ask_credential_on_launch) and the workflow asks for no inventory.
        assert wf["ask_inventory_on_launch"] is False
