"""The kubernetes service driver, run through ansible-playbook against a fake Kubernetes API (fake_k8s.py).

What this proves: the requests kubernetes.core sends for each entry (which object, which patch body, which
content type), idempotence (no PATCH when nothing differs), check mode (GETs only), the rollout wait (polls
until the new generation is observed and available, fails with the last status on timeout), and the facts
driver_logs / driver_status. What it cannot prove: how a real API server and Deployment controller react
(see docs/KUBERNETES.md).
"""

from __future__ import annotations

import datetime
import re

from tests.kubernetes.conftest import NS, failure

DEPLOY = "/apis/apps/v1/namespaces/%s/deployments/" % NS
MULTI = {"EVENT_STREAM_MODE": "multi", "AA_STREAM_CANDIDATES": "AA_CORE_HOT,ATHLETE_ALLY_EVENTS"}


def env_of(obj, container=None):
    containers = obj["spec"]["template"]["spec"]["containers"]
    c = next(c for c in containers if c["name"] == (container or containers[0]["name"]))
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def deployment_gets(fake, name):
    return [r for r in fake.requests if r == ("GET", DEPLOY + name)]


# ---- set_env ----------------------------------------------------------------------------------------------------

def test_set_env_patches_exactly_the_listed_vars_and_waits_for_the_rollout(driver, fake):
    res = driver.run([("set_env", {"driver_service": "normalize-service", "driver_env": MULTI})])
    assert res.rc == 0, failure(res)

    assert len(fake.patches) == 1, fake.patches
    patch = fake.patches[0]
    assert patch["path"] == DEPLOY + "normalize-service"
    assert patch["content_type"] == "application/strategic-merge-patch+json"
    body = patch["body"]
    assert body["kind"] == "Deployment" and body["metadata"]["name"] == "normalize-service"
    # Only the pod template's container env is in the patch: nothing else of the deployment is touched.
    assert list(body["spec"]) == ["template"]
    assert list(body["spec"]["template"]) == ["spec"]
    containers = body["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "normalize-service", "env": containers[0]["env"]}]
    assert sorted((e["name"], e["value"]) for e in containers[0]["env"]) == sorted(MULTI.items())

    live = fake.get(NS, "normalize-service")
    assert env_of(live) == dict(MULTI, LOG_LEVEL="info")  # untouched var kept (strategic merge by name)
    assert live["metadata"]["generation"] == 2
    # The wait polled past the stale status (complete, but for generation 1) and the rollout in progress
    # until the new generation was complete: 3 GETs after the PATCH with settle_after=1.
    after_patch = fake.requests[fake.requests.index(("PATCH", DEPLOY + "normalize-service")) + 1:]
    assert after_patch.count(("GET", DEPLOY + "normalize-service")) == 3
    assert live["status"]["observedGeneration"] == 2
    assert res.task("athlete_ally.nats.service_driver : Kubernetes driver | patch container env (triggers the rollout)")[
        "changed"] is True


def test_set_env_is_idempotent(driver, fake):
    res = driver.run([("set_env", {"driver_service": "normalize-service",
                                   "driver_env": {"EVENT_STREAM_MODE": "single", "LOG_LEVEL": "info"}})])
    assert res.rc == 0, failure(res)
    assert fake.writes() == []
    assert res.changed == 0


def test_set_env_one_var_differs_sends_the_listed_vars_only(driver, fake):
    res = driver.run([("set_env", {"driver_service": "normalize-service",
                                   "driver_env": {"EVENT_STREAM_MODE": "single", "AA_STREAM_CANDIDATES": "X"}})])
    assert res.rc == 0, failure(res)
    assert len(fake.patches) == 1
    env = fake.patches[0]["body"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"] for e in env} == {"EVENT_STREAM_MODE", "AA_STREAM_CANDIDATES"}


def test_set_env_stringifies_values_replaces_value_from_and_null_removes(driver, fake):
    live = fake.get(NS, "normalize-service")
    live["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}})
    res = driver.run([("set_env", {"driver_service": "normalize-service",
                                   "driver_env": {"DATABASE_URL": "postgres://placeholder", "FLAG": True,
                                                  "ACK_WAIT_MS": 60000, "LOG_LEVEL": None, "NEVER_SET": None}})])
    assert res.rc == 0, failure(res)
    env = {e["name"]: e for e in fake.patches[0]["body"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"] == {"name": "DATABASE_URL", "value": "postgres://placeholder", "valueFrom": None}
    assert env["FLAG"] == {"name": "FLAG", "value": "true"}
    assert env["ACK_WAIT_MS"] == {"name": "ACK_WAIT_MS", "value": "60000"}
    # null removes a variable that is set, and sends nothing for one that is not
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "$patch": "delete"}
    assert "NEVER_SET" not in env
    live = env_of(fake.get(NS, "normalize-service"))
    assert "LOG_LEVEL" not in live and live["DATABASE_URL"] == "postgres://placeholder"


def test_set_env_check_mode_sends_no_write(driver, fake):
    res = driver.run([("set_env", {"driver_service": "normalize-service", "driver_env": MULTI})], check=True)
    assert res.rc == 0, failure(res)
    assert fake.writes() == [] and fake.patches == []
    would = res.task("athlete_ally.nats.service_driver : Kubernetes driver | check mode - env that would change")
    assert would["changed"] is True
    assert "AA_STREAM_CANDIDATES" in would["msg"] and "EVENT_STREAM_MODE" in would["msg"]
    assert env_of(fake.get(NS, "normalize-service"))["EVENT_STREAM_MODE"] == "single"


def test_set_env_uses_the_mapped_container_and_fails_clearly_without_it(driver, fake):
    # ingest-service's container is called "ingest", not like the deployment.
    res = driver.run([("set_env", {"driver_service": "ingest-service", "driver_env": {"A": "1"}})])
    assert res.rc != 0
    assert "no container named ingest-service (containers: ['ingest'])" in res.stdout
    assert fake.patches == []

    # The per-deployment map wins over the inventory-wide k8s_container.
    res = driver.run([("set_env", {"driver_service": "ingest-service", "driver_env": {"A": "1"}})],
                     extra_vars={"k8s_container": "normalize", "k8s_containers": {"ingest-service": "ingest"}})
    assert res.rc == 0, failure(res)
    assert fake.patches[0]["body"]["spec"]["template"]["spec"]["containers"] == [
        {"name": "ingest", "env": [{"name": "A", "value": "1"}]}]


def test_missing_deployment_fails_without_writing(driver, fake):
    res = driver.run([("set_env", {"driver_service": "nope", "driver_env": {"A": "1"}})])
    assert res.rc != 0
    assert "deployment/nope in namespace production was not found" in res.stdout
    assert fake.writes() == []


def test_rollout_timeout_fails_with_last_seen_status(driver, fake):
    fake.stuck = True  # one replica never becomes available
    res = driver.run([("set_env", {"driver_service": "normalize-service", "driver_env": MULTI})],
                     extra_vars={"rollout_timeout": 3})
    assert res.rc != 0
    msg = res.task("athlete_ally.nats.service_driver : Kubernetes driver | rollout did not complete")["msg"]
    assert "did not finish rolling out within 3s" in msg
    assert "generation=2" in msg and "spec.replicas=2" in msg
    assert '"unavailableReplicas": 1' in msg and '"availableReplicas": 1' in msg


# ---- restart ------------------------------------------------------------------------------------------------------

def test_restart_stamps_restarted_at_like_kubectl(driver, fake):
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    res = driver.run([("restart", {"driver_service": "normalize-service"})])
    assert res.rc == 0, failure(res)
    assert len(fake.patches) == 1
    body = fake.patches[0]["body"]
    assert fake.patches[0]["content_type"] == "application/strategic-merge-patch+json"
    assert body["spec"] == {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": body["spec"]["template"]["metadata"]["annotations"][
            "kubectl.kubernetes.io/restartedAt"]}}}}
    stamp = body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", stamp)
    parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert before <= parsed <= before + datetime.timedelta(minutes=2)
    assert fake.get(NS, "normalize-service")["metadata"]["generation"] == 2
    assert env_of(fake.get(NS, "normalize-service"))["EVENT_STREAM_MODE"] == "single"


# ---- set_image ----------------------------------------------------------------------------------------------------

def test_set_image_patches_only_the_image_and_is_idempotent(driver, fake):
    image = "athlete-ally/normalize:phase2-migration"
    res = driver.run([("set_image", {"driver_service": "normalize-service", "driver_image": image}),
                      ("set_image", {"driver_service": "normalize-service", "driver_image": image})])
    assert res.rc == 0, failure(res)
    assert len(fake.patches) == 1, fake.patches
    assert fake.patches[0]["body"]["spec"] == {"template": {"spec": {"containers": [
        {"name": "normalize-service", "image": image}]}}}
    assert fake.get(NS, "normalize-service")["spec"]["template"]["spec"]["containers"][0]["image"] == image


# ---- scale --------------------------------------------------------------------------------------------------------

def test_scale_green_up_and_blue_down(driver, fake):
    res = driver.run([("scale", {"driver_service": "normalize-service-green", "driver_replicas": 2}),
                      ("scale", {"driver_service": "normalize-service-blue", "driver_replicas": 0}),
                      ("scale", {"driver_service": "normalize-service-blue", "driver_replicas": "0"})])
    assert res.rc == 0, failure(res)
    assert [(p["path"], p["body"]["spec"]) for p in fake.patches] == [
        (DEPLOY + "normalize-service-green/scale", {"replicas": 2}),
        (DEPLOY + "normalize-service-blue/scale", {"replicas": 0}),
    ]  # the third call (already 0) sends nothing
    assert fake.get(NS, "normalize-service-green")["spec"]["replicas"] == 2
    assert fake.get(NS, "normalize-service-green")["status"]["availableReplicas"] == 2
    assert fake.get(NS, "normalize-service-blue")["spec"]["replicas"] == 0


def test_scale_timeout_fails_with_last_seen_status(driver, fake):
    fake.stuck = True
    res = driver.run([("scale", {"driver_service": "normalize-service-green", "driver_replicas": 2})],
                     extra_vars={"rollout_timeout": 3})
    assert res.rc != 0
    msg = res.task("athlete_ally.nats.service_driver : Kubernetes driver | scale did not complete")["msg"]
    assert "to 2 failed or was not ready within 3s" in msg and '"unavailableReplicas": 1' in msg


# ---- logs and status ----------------------------------------------------------------------------------------------

def test_logs_reads_tail_of_every_running_pod(driver, fake):
    labels = {"app": "normalize-service"}
    fake.add_pod(NS, "normalize-service-b", labels, "old\nnormalize-hrv-durable bound to AA_CORE_HOT\n",
                 container="normalize-service")
    fake.add_pod(NS, "normalize-service-a", labels, "one\ntwo\nnormalize-oura bound to AA_VENDOR_HOT\n",
                 container="normalize-service")
    fake.add_pod(NS, "normalize-service-c", labels, "never\n", phase="Pending", container="normalize-service")
    fake.add_pod(NS, "ingest-service-x", {"app": "ingest-service"}, "not mine\n")
    res = driver.run([("logs", {"driver_service": "normalize-service", "driver_log_lines": 2})])
    assert res.rc == 0, failure(res)
    assert res.task("out 0")["msg"]["driver_logs"] == [
        "two", "normalize-oura bound to AA_VENDOR_HOT",
        "old", "normalize-hrv-durable bound to AA_CORE_HOT",
    ]
    logs = [r[1] for r in fake.requests if r[1].split("?")[0].endswith("/log")]
    assert len(logs) == 2 and all("tailLines=2" in r and "container=normalize-service" in r for r in logs)
    assert ("GET", "/api/v1/namespaces/%s/pods?labelSelector=app%%3Dnormalize-service" % NS) in fake.requests
    assert fake.writes() == []


def test_status_reports_running_env_and_replicas(driver, fake):
    res = driver.run([("status", {"driver_service": "normalize-service"}),
                      ("status", {"driver_service": "normalize-service-green"}),
                      ("status", {"driver_service": "absent-service"})])
    assert res.rc == 0, failure(res)
    up = res.task("out 0")["msg"]["driver_status"]
    assert up["running"] is True and up["replicas"] == 2 and up["exists"] is True
    assert up["env"] == {"EVENT_STREAM_MODE": "single", "AA_STREAM_CANDIDATES": "ATHLETE_ALLY_EVENTS",
                         "LOG_LEVEL": "info"}
    green = res.task("out 1")["msg"]["driver_status"]
    assert green["running"] is False and green["replicas"] == 0 and green["env"] == {"EVENT_STREAM_MODE": "multi"}
    absent = res.task("out 2")["msg"]["driver_status"]
    assert absent == dict(absent, exists=False, running=False, replicas=0, env={})


# ---- check mode, every entry --------------------------------------------------------------------------------------

def test_check_mode_sends_only_gets_for_every_entry(driver, fake):
    fake.add_pod(NS, "normalize-service-a", {"app": "normalize-service"}, "x bound to AA_CORE_HOT\n",
                 container="normalize-service")
    res = driver.run([
        ("set_env", {"driver_service": "normalize-service", "driver_env": MULTI}),
        ("restart", {"driver_service": "normalize-service"}),
        ("set_image", {"driver_service": "normalize-service", "driver_image": "athlete-ally/normalize:new"}),
        ("scale", {"driver_service": "normalize-service-green", "driver_replicas": 2}),
        ("logs", {"driver_service": "normalize-service"}),
        ("status", {"driver_service": "normalize-service"}),
    ], check=True)
    assert res.rc == 0, failure(res)
    assert fake.patches == []
    assert {m for m, _path in fake.requests} == {"GET"}
    assert res.task("out 4")["msg"]["driver_logs"] == ["x bound to AA_CORE_HOT"]
    assert res.task("out 5")["msg"]["driver_status"]["env"]["EVENT_STREAM_MODE"] == "single"
    assert fake.get(NS, "normalize-service-green")["spec"]["replicas"] == 0
    assert res.changed >= 4  # set_env, restart, set_image and scale report what they would do


# ---- through the role's dispatcher ------------------------------------------------------------------------------

def test_dispatch_with_service_driver_kubernetes(driver, fake):
    """tasks_from <entry> with service_driver: kubernetes reaches these files (and passes the argument specs)."""
    fake.settle_after = 0
    res = driver.run([("set_env", {"driver_service": "normalize-service", "driver_env": MULTI}),
                      ("scale", {"driver_service": "normalize-service-green", "driver_replicas": 1}),
                      ("status", {"driver_service": "normalize-service"})], via_dispatch=True)
    assert res.rc == 0, failure(res)
    assert [p["path"] for p in fake.patches] == [DEPLOY + "normalize-service", DEPLOY + "normalize-service-green/scale"]
    assert res.task("out 2")["msg"]["driver_status"]["env"]["EVENT_STREAM_MODE"] == "multi"


def test_preflight_checks_deployments_and_every_verb_the_driver_uses(driver, fake):
    """The preflight entry reads each deployment and asks a SelfSubjectAccessReview per call the driver makes; it
    writes nothing, also in check mode; a denied verb fails in one line naming it."""
    services = ["normalize-service", "normalize-service-green"]
    res = driver.run([("preflight", {"driver_services": services})], via_dispatch=True, check=True)
    assert res.rc == 0, failure(res)
    reviews = [r for r in fake.requests if r[1].startswith("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")]
    assert len(reviews) == 2 * 6
    assert not [r for r in fake.writes() if "selfsubjectaccessreviews" not in r[1]]
    fake.denied.add("patch apps/deployments/scale")
    res = driver.run([("preflight", {"driver_services": services})], via_dispatch=True)
    assert res.rc != 0
    msg = failure(res)
    assert "may not patch apps/deployments/scale in namespace %s (deployment normalize-service)" % NS in msg
    fake.denied.clear()
    res = driver.run([("preflight", {"driver_services": ["no-such-deployment"]})], via_dispatch=True)
    assert res.rc != 0 and "deployment/no-such-deployment in namespace %s was not found" % NS in failure(res)
