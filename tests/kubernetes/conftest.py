"""Fixtures for the kubernetes service driver tests: a fake API server and a runner for driver entries."""

from __future__ import annotations

import yaml
import pytest

from tests.kubernetes.fake_k8s import FakeKubernetes, deployment
from lab.ansible_run import run_playbook_file

NS = "production"


class Driver(object):
    """Runs entries of roles/service_driver/tasks/kubernetes through ansible-playbook against the fake API."""

    def __init__(self, fake, tmp_path):
        self.fake = fake
        self.tmp = tmp_path
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(fake.kubeconfig(NS)))
        self.inventory_vars = {
            "k8s_kubeconfig": str(self.kubeconfig), "k8s_context": "fake", "k8s_namespace": NS,
            "rollout_timeout": 20, "k8s_poll_interval": 1,
        }

    def run(self, steps, check=False, extra_vars=None, via_dispatch=False, inventory=None, plain_kubeconfig=False):
        """steps: list of (entry, vars). Each fact the entry sets is echoed by a debug task named 'out N'.

        Without ``inventory`` the play sets the inventory vars itself (k8s_kubeconfig etc. for the fake API) and
        calls the kubernetes entries directly (tasks_from kubernetes/<entry>); ``via_dispatch`` goes through the
        role's dispatcher (tasks_from <entry>, argument specs) instead. With ``inventory`` (a path) the vars come
        only from that inventory, which is pointed at the fake API through AA_KUBECONFIG / AA_KUBE_CONTEXT, or with
        ``plain_kubeconfig`` through the client's own KUBECONFIG (the inventory then omits kubeconfig and context).
        """
        tasks = []
        for i, (entry, step_vars) in enumerate(steps):
            tasks.append({
                "name": "step %d %s" % (i, entry),
                "ansible.builtin.include_role": {
                    "name": "athlete_ally.nats.service_driver",
                    "tasks_from": entry if (via_dispatch or inventory) else "kubernetes/" + entry,
                },
                "vars": step_vars,
            })
            tasks.append({"name": "out %d" % i, "ansible.builtin.debug": {
                "msg": {"driver_logs": "{{ driver_logs | default(None) }}",
                        "driver_status": "{{ driver_status | default(None) }}"}}})
        env = {"TMPDIR": str(self.tmp)}
        if inventory:
            play_vars = {}
            if plain_kubeconfig:
                env.update(KUBECONFIG=str(self.kubeconfig), AA_KUBECONFIG="", AA_KUBE_CONTEXT="")
            else:
                env.update(AA_KUBECONFIG=str(self.kubeconfig), AA_KUBE_CONTEXT="fake")
        else:
            play_vars = dict(self.inventory_vars)
            if via_dispatch:
                play_vars["service_driver"] = "kubernetes"
        play_vars.update(extra_vars or {})
        play = [{"name": "driver", "hosts": "localhost", "connection": "local", "gather_facts": False,
                 "vars": play_vars, "tasks": tasks}]
        if not play_vars:
            del play[0]["vars"]
        path = self.tmp / "play.yml"
        path.write_text(yaml.safe_dump(play, sort_keys=False))
        args = ["-i", str(inventory) if inventory else "localhost,"] + (["--check"] if check else [])
        # TMPDIR: kubernetes.core caches API discovery in $TMPDIR; keep it per test.
        return run_playbook_file(path, args, env=env)


def failure(result):
    return "rc=%s\nstdout tail:\n%s\nstderr tail:\n%s" % (result.rc, result.stdout[-4000:], result.stderr[-2000:])


@pytest.fixture
def fake():
    with FakeKubernetes(settle_after=1) as f:
        f.add_deployment(deployment("normalize-service", NS, replicas=2,
                                    env={"EVENT_STREAM_MODE": "single", "AA_STREAM_CANDIDATES": "ATHLETE_ALLY_EVENTS",
                                         "LOG_LEVEL": "info"}))
        f.add_deployment(deployment("normalize-service-blue", NS, replicas=2, env={"EVENT_STREAM_MODE": "single"}))
        f.add_deployment(deployment("normalize-service-green", NS, replicas=0, env={"EVENT_STREAM_MODE": "multi"}))
        f.add_deployment(deployment("ingest-service", NS, replicas=1, container="ingest"))
        yield f


@pytest.fixture
def driver(fake, tmp_path):
    return Driver(fake, tmp_path)
