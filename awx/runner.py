#!/usr/bin/env python3
"""Launch the job templates and the workflow of awx/controller.yml through ansible-runner, as AWX would.

No AWX server is needed: each job gets a private data dir, the template's playbook (run from the project, this
checkout), an inventory, extra vars (template vars, survey defaults, launch vars), --check/--diff for job_type
check and diff_mode, the template's job_tags, and the credential injected per the "NATS JetStream" credential type's
injectors (files written into the private data dir, environment variables set for the job only). NATS_* variables
of the calling shell are not passed on: the job sees only what the credential injects.

    awx/runner.py template "Rehearse phase 1" -i INVENTORY --credential creds.yml
    awx/runner.py workflow "Phase 2 migration" -i INVENTORY --credential creds.yml [--approve-all]

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
# Variables a job never inherits from the shell that launched it (AWX jobs start from a clean environment).
INHERITED_PREFIXES = ("NATS_", "AA_NATS_")


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


def inject(credential_type, inputs, directory):
    """Env variables for a job from the credential type's injectors (AWX semantics: file templates written to
    files whose paths are ``tower.filename.<name>``; blank inputs render as empty strings)."""
    env = jinja2.Environment(undefined=jinja2.Undefined, autoescape=False)  # noqa: S701 - env values, not HTML
    known = [f["id"] for f in credential_type["inputs"]["fields"]]
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise SystemExit("credential inputs %s are not fields of %s (fields: %s)"
                         % (", ".join(unknown), credential_type["name"], ", ".join(known)))
    missing = [f for f in credential_type["inputs"].get("required", []) if not inputs.get(f)]
    if missing:
        raise SystemExit("credential input %s is required by %s" % (", ".join(missing), credential_type["name"]))
    namespace = dict((k, inputs.get(k, "")) for k in known)
    files = {}
    for key, tmpl in (credential_type["injectors"].get("file") or {}).items():
        name = key.split(".", 1)[1]
        path = Path(directory) / ("cred_%s" % name)
        path.write_text(env.from_string(tmpl).render(**namespace))
        path.chmod(0o600)
        files[name] = str(path)
    namespace["tower"] = {"filename": files}
    return dict((k, env.from_string(v).render(**namespace)) for k, v in credential_type["injectors"]["env"].items())


@contextlib.contextmanager
def clean_environment():
    """The launching shell's NATS_* variables out of the way while ansible-runner builds the job's environment."""
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
           keep=False):
    """Run one job template as AWX would; returns a Job (status 'successful' or 'failed').
    ``keep`` leaves its private data dir (Job.private_data_dir) for inspection; otherwise it is removed."""
    import ansible_runner

    data = data or load()
    jt = template(data, name)
    pdd = tempfile.mkdtemp(prefix="awx-job-")
    envvars = inject(data["credential_type"], credential_inputs, pdd)
    envvars["ANSIBLE_NOCOLOR"] = "1"
    envvars["PATH"] = "%s:%s" % (Path(sys.executable).parent, os.environ.get("PATH", ""))
    extravars = dict(json.loads(jt.get("extra_vars") or "{}") if isinstance(jt.get("extra_vars"), str)
                     else jt.get("extra_vars") or {})
    extravars.update(survey_defaults(jt))
    extravars.update(extra_vars or {})
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


def run_workflow(inventory, credential_inputs, approve=None, node_extra_data=None, data=None, log=print,
                 extra_vars=None):
    """Run the workflow: start at the root nodes, follow success or failure edges (approvals ask ``approve``).
    ``extra_vars`` go to every job (a workflow's extra vars), ``node_extra_data`` to one node's job (wins).

    Returns [(node id, Job or 'approved'/'denied')] in the order run, and whether the workflow succeeded: every
    node that ran succeeded, or each failure was handled by a failure edge (AWX's rule)."""
    data = data or load()
    nodes = dict((n["id"], n) for n in data["workflow"]["nodes"])
    children = set(c for n in nodes.values() for c in n.get("success", []) + n.get("failure", []))
    queue = [n for n in nodes if n not in children]
    ran, ok = [], True
    while queue:
        node = nodes[queue.pop(0)]
        if "approval" in node:
            verdict = bool(approve(node)) if approve else False
            ran.append((node["id"], "approved" if verdict else "denied"))
            log("approval %s: %s" % (node["approval"]["name"], ran[-1][1]))
            queue.extend(node.get("success" if verdict else "failure", []))
            ok = ok and verdict
            continue
        job_vars = dict(extra_vars or {}, **(node_extra_data or {}).get(node["id"], {}))
        job = launch(node["template"], inventory, credential_inputs, extra_vars=job_vars, data=data)
        ran.append((node["id"], job))
        log("%s (%s): %s rc=%s" % (node["id"], node["template"], job.status, job.rc))
        edges = node.get("success" if job.ok else "failure", [])
        if not job.ok and not edges:
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
    if args.name != data["workflow"]["name"]:
        raise SystemExit("no workflow %r; known: %s" % (args.name, data["workflow"]["name"]))

    def approve(node):
        if args.approve_all:
            return True
        answer = input("%s - %s [approve/deny]: " % (node["approval"]["name"], node["approval"].get("description")))
        return answer.strip().lower() in ("approve", "a", "yes", "y")

    _ran, ok = run_workflow(args.inventory, inputs, approve=approve, data=data, extra_vars=extra)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
