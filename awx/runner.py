#!/usr/bin/env python3
"""Launch the job templates and the per-environment workflows of awx/controller.yml through ansible-runner, as AWX
would, refusing what AWX refuses.

No AWX server is needed: each job gets a private data dir, the template's playbook (run from the project, this
checkout), an inventory, extra vars (template vars, then survey answers and launch variables, checked as AWX
checks them: required answers, min/max, choices, no variable the template does not ask for), --check/--diff for
job_type check and diff_mode, the template's job_tags, and its credentials injected per their credential types'
injectors (files written into the private data dir, environment variables and extra vars for the job only).
NATS_* and AA_NATS_* variables of the calling shell are not passed on: the job sees only what its credentials
inject. A workflow follows success/failure edges; a denied approval is a failed node (its failure edge).

    awx/runner.py template "Rehearse phase 1" -i INVENTORY --credential creds.yml
    awx/runner.py workflow "Phase 2 migration (staging)" -i INVENTORY --credential creds.yml [--approve-all]

creds.yml holds the credential's inputs (servers, user, password, token, nkey_seed, creds, tls_ca, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import jinja2
import yaml

REPO = Path(__file__).resolve().parents[1]
CONTROLLER = REPO / "awx" / "controller.yml"
# Variables a job never inherits from the shell that launched it (AWX jobs start from a clean environment): what
# the credential types of awx/controller.yml and AWX's built-in Kubernetes and AWS types inject.
INHERITED_PREFIXES = ("NATS_", "AA_NATS_", "AA_DB_", "AA_PROMETHEUS_URL", "AA_NOTIFY_URL", "K8S_AUTH_", "AWS_")


def load(path=CONTROLLER):
    return yaml.safe_load(Path(path).read_text())


def template(data, name):
    for item in data["job_templates"]:
        if item["name"] == name:
            return dict(data["template_defaults"], **item)
    raise SystemExit("no job template %r in %s; known: %s" % (name, CONTROLLER, ", ".join(
        t["name"] for t in data["job_templates"])))


def survey_defaults(jt):
    return {q["variable"]: q.get("default", "") for q in (jt.get("survey") or {}).get("spec", [])}


def _survey_errors(jt, answers):
    """AWX's survey checks on launch: required answers, text length and integer bounds (min/max), choices."""
    errors = []
    for q in (jt.get("survey") or {}).get("spec", []):
        var, value = q["variable"], answers.get(q["variable"])
        if value in (None, ""):
            if q.get("required"):
                errors.append("'%s' value missing" % var)
            continue
        if q["type"] in ("text", "textarea", "password"):
            size = len(str(value))
            if "min" in q and size < int(q["min"]):
                errors.append("'%s' is too short (length is %d, must be at least %s)" % (var, size, q["min"]))
            if "max" in q and size > int(q["max"]):
                errors.append("'%s' is too long (length is %d, must be at most %s)" % (var, size, q["max"]))
        elif q["type"] in ("integer", "float"):
            number = float(value)
            if ("min" in q and number < float(q["min"])) or ("max" in q and number > float(q["max"])):
                errors.append("'%s' value %s is outside %s..%s" % (var, value, q.get("min"), q.get("max")))
        elif q["type"] in ("multiplechoice", "multiselect"):
            choices = q["choices"] if isinstance(q["choices"], list) else q["choices"].split("\n")
            picked = value if isinstance(value, list) else [value]
            if any(p not in choices for p in picked):
                errors.append("'%s' value %s is not one of %s" % (var, value, ", ".join(choices)))
    return errors


def launch_vars(jt, extra_vars):
    """The extra vars a launch may give, as AWX accepts them: survey answers (checked) if the survey is enabled,
    anything else only if the template asks for variables on launch. Refused: SystemExit, one line."""
    extra_vars = dict(extra_vars or {})
    survey_vars = set(survey_defaults(jt))
    others = sorted(set(extra_vars) - survey_vars)
    if others and not jt.get("ask_variables_on_launch"):
        raise SystemExit("%s: variables %s are not allowed on launch (the template does not ask for variables; "
                         "set ask_variables_on_launch in awx/controller.yml)" % (jt["name"], ", ".join(others)))
    answers = dict(survey_defaults(jt), **extra_vars)
    errors = _survey_errors(jt, answers)
    if errors:
        raise SystemExit("%s: survey refused: %s" % (jt["name"], "; ".join(errors)))
    return answers


def credential_type(data, name):
    for item in data["credential_types"]:
        if item["name"] == name:
            return item
    raise SystemExit("no credential type %r in %s" % (name, CONTROLLER))


def nats_type(data):
    """The NATS credential type: the one whose env injector sets NATS_URL."""
    return next(t for t in data["credential_types"] if "NATS_URL" in t["injectors"].get("env", {}))


def environment(data, name):
    for item in data["environments"]:
        if item["name"] == name:
            return item
    raise SystemExit("no environment %r in %s; known: %s" % (name, CONTROLLER, ", ".join(
        e["name"] for e in data["environments"])))


def inject(ctype, inputs, directory, extra_vars=None):
    """Env variables for a job from a credential type's injectors (AWX semantics: file templates written to
    files whose paths are ``tower.filename.<name>``; blank inputs render as empty strings). ``extra_vars``, when
    given (a dict), receives what the type's extra_vars injector renders."""
    env = jinja2.Environment(undefined=jinja2.Undefined, autoescape=False)  # noqa: S701 - env values, not HTML
    known = [f["id"] for f in ctype["inputs"]["fields"]]
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise SystemExit("credential inputs %s are not fields of %s (fields: %s)"
                         % (", ".join(unknown), ctype["name"], ", ".join(known)))
    missing = [f for f in ctype["inputs"].get("required", []) if not inputs.get(f)]
    if missing:
        raise SystemExit("credential input %s is required by %s" % (", ".join(missing), ctype["name"]))
    namespace = dict((k, inputs.get(k, "")) for k in known)
    files = {}
    for key, tmpl in (ctype["injectors"].get("file") or {}).items():
        name = key.split(".", 1)[1]
        path = Path(directory) / ("cred_%s" % name)
        path.write_text(env.from_string(tmpl).render(**namespace))
        path.chmod(0o600)
        files[name] = str(path)
    namespace["tower"] = {"filename": files}
    if extra_vars is not None:
        for key, tmpl in (ctype["injectors"].get("extra_vars") or {}).items():
            extra_vars[key] = env.from_string(tmpl).render(**namespace)
    return dict((k, env.from_string(v).render(**namespace)) for k, v in (ctype["injectors"].get("env") or {}).items())


@contextlib.contextmanager
def clean_environment():
    """The launching shell's credential variables out of the way while ansible-runner builds the job's environment."""
    saved = dict((k, v) for k, v in os.environ.items() if k.startswith(INHERITED_PREFIXES))
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


class Job(object):
    def __init__(self, name, status, rc, stats, stdout, private_data_dir):
        self.name, self.status, self.rc, self.stats = name, status, rc, stats or {}
        self.stdout, self.private_data_dir = stdout, private_data_dir

    @property
    def ok(self):
        return self.status == "successful"

    def count(self, key):
        return sum((self.stats.get(key) or {}).values())

    def __repr__(self):
        return "<Job %s %s rc=%s changed=%s>" % (self.name, self.status, self.rc, self.count("changed"))


def launch(name, inventory, credential_inputs, extra_vars=None, data=None, event_handler=None, verbosity=0,
           keep=False, credentials=None, workflow_vars=None, collections_path=None):
    """Run one job template as AWX would; returns a Job (status 'successful' or 'failed').

    ``credential_inputs``: the NATS credential's inputs (None: no NATS credential); ``credentials``: more
    credentials as [(credential type name, inputs)], at most one per type (AWX's rule). ``extra_vars`` are the
    launch's prompts (refused unless the survey or ask_variables_on_launch allows them); ``workflow_vars`` come
    from a workflow and are always passed, as AWX does. ``collections_path`` goes first on the job's collections
    path (AWX: the project sync's installed collections/requirements.yml). ``keep`` leaves the private data dir."""
    import ansible_runner

    data = data or load()
    jt = template(data, name)
    extravars = dict(json.loads(jt.get("extra_vars") or "{}") if isinstance(jt.get("extra_vars"), str)
                     else jt.get("extra_vars") or {})
    extravars.update(launch_vars(jt, extra_vars))
    extravars.update(workflow_vars or {})
    creds = ([(nats_type(data)["name"], credential_inputs)] if credential_inputs is not None else []) + list(
        credentials or [])
    types = [t for t, _i in creds]
    if len(set(types)) != len(types):
        raise SystemExit("%s: more than one credential of one type (%s)" % (name, ", ".join(sorted(types))))
    pdd = tempfile.mkdtemp(prefix="awx-job-")
    envvars = {}
    for index, (type_name, inputs) in enumerate(creds):
        cred_dir = Path(pdd) / ("credential_%d" % index)
        cred_dir.mkdir()
        envvars.update(inject(credential_type(data, type_name), inputs, cred_dir, extra_vars=extravars))
    envvars["ANSIBLE_NOCOLOR"] = "1"
    envvars["PATH"] = "%s:%s" % (Path(sys.executable).parent, os.environ.get("PATH", ""))
    if collections_path:
        envvars["ANSIBLE_COLLECTIONS_PATH"] = "%s:%s" % (collections_path, os.environ.get(
            "ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections")))
    cmdline = []
    if jt["job_type"] == "check":
        cmdline.append("--check")
    if jt["diff_mode"]:
        cmdline.append("--diff")
    if verbosity:
        cmdline.append("-" + "v" * verbosity)
    with clean_environment():
        run = ansible_runner.run(
            private_data_dir=pdd, project_dir=str(REPO), playbook=jt["playbook"], inventory=str(inventory),
            extravars=extravars, envvars=envvars, tags=jt["job_tags"] or None, cmdline=" ".join(cmdline) or None,
            quiet=True, event_handler=event_handler, settings={"suppress_ansible_output": True})
    stdout = run.stdout.read()
    job = Job(name, run.status, run.rc, run.stats, stdout, pdd if keep else None)
    if not keep:  # as in AWX, the private data dir (injected secrets, artifacts) does not outlive the job
        shutil.rmtree(pdd, ignore_errors=True)
    return job


def workflow_name(data, env_name):
    return "%s (%s)" % (data["workflow"]["name"], env_name)


def run_workflow(inventory, credential_inputs, approve=None, node_extra_data=None, data=None, log=print,
                 extra_vars=None, environment_name="staging", credentials=None, launch_job=None):
    """Run the workflow of one environment: start at the root nodes, follow success or failure edges (an
    approval asks ``approve``; a denied one is a failed node and takes its failure edge, as in AWX).

    ``extra_vars`` (the workflow's launch variables) go to every job; ``node_extra_data`` to one node's job,
    which must ask for variables. ``credentials`` ({credential name: inputs}) may name only that environment's
    credentials: a node carries its environment's set, never another's. ``launch_job`` (default ``launch``) runs
    a node's job. Returns [(node id, Job or 'approved'/'denied')] in the order run, and whether the workflow
    succeeded: every failed node had a failure edge to take (AWX's rule)."""
    data = data or load()
    env = environment(data, environment_name)
    if extra_vars and not data["workflow"].get("ask_variables_on_launch"):
        raise SystemExit("%s: variables are not allowed on launch" % workflow_name(data, environment_name))
    by_name = dict((c["name"], c) for c in env["credentials"])
    foreign = sorted(set(credentials or {}) - set(by_name))
    if foreign:
        raise SystemExit("%s: credentials %s are not %s credentials (%s)" % (
            workflow_name(data, environment_name), ", ".join(foreign), environment_name, ", ".join(by_name)))
    node_creds = [(by_name[n]["type"], dict(by_name[n]["inputs"], **inputs)) for n, inputs in
                  sorted((credentials or {}).items())]
    launch_job = launch_job or launch
    nodes = dict((n["id"], n) for n in data["workflow"]["nodes"])
    children = set(c for n in nodes.values() for c in n.get("success", []) + n.get("failure", []))
    queue = [n for n in nodes if n not in children]
    ran, ok = [], True
    while queue:
        node = nodes[queue.pop(0)]
        if "approval" in node:
            passed = bool(approve(node)) if approve else False
            ran.append((node["id"], "approved" if passed else "denied"))
            log("approval %s: %s" % (node["approval"]["name"], ran[-1][1]))
        else:
            job = launch_job(node["template"], inventory, credential_inputs, data=data, credentials=node_creds,
                             extra_vars=(node_extra_data or {}).get(node["id"]), workflow_vars=extra_vars)
            ran.append((node["id"], job))
            passed = job.ok
            log("%s (%s): %s rc=%s" % (node["id"], node["template"], job.status, job.rc))
        edges = node.get("success" if passed else "failure", [])
        if not passed and not edges:
            ok = False
        queue.extend(edges)
    return ran, ok


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("kind", choices=["template", "workflow"])
    ap.add_argument("name", help="job template name (template) or workflow name")
    ap.add_argument("-i", "--inventory", required=True)
    ap.add_argument("--credential", required=True, help="YAML file with the NATS JetStream credential's inputs")
    ap.add_argument("-e", "--extra-vars", action="append", default=[], help="key=value (a launch prompt)")
    ap.add_argument("--approve-all", action="store_true", help="approve every approval node (rehearsals only)")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    return ap.parse_args(argv)


def main(argv=None):
    args = _args(argv)
    data = load()
    inputs = yaml.safe_load(Path(args.credential).read_text()) or {}
    extra = dict(item.split("=", 1) for item in args.extra_vars)
    if args.kind == "template":
        job = launch(args.name, args.inventory, inputs, extra_vars=extra, data=data, verbosity=args.verbose)
        sys.stdout.write(job.stdout)
        print("%s: %s (rc %s)" % (job.name, job.status, job.rc))
        return 0 if job.ok else 1
    by_workflow = dict((workflow_name(data, e["name"]), e["name"]) for e in data["environments"])
    if args.name not in by_workflow:
        raise SystemExit("no workflow %r; known: %s" % (args.name, ", ".join(by_workflow)))

    def approve(node):
        if args.approve_all:
            return True
        answer = input("%s - %s [approve/deny]: " % (node["approval"]["name"], node["approval"].get("description")))
        return answer.strip().lower() in ("approve", "a", "yes", "y")

    _ran, ok = run_workflow(args.inventory, inputs, approve=approve, data=data, extra_vars=extra,
                            environment_name=by_workflow[args.name])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
