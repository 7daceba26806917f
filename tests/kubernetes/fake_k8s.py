"""A tiny fake Kubernetes API server, just enough for kubernetes.core's k8s, k8s_info, k8s_scale and k8s_log.

It is NOT a Kubernetes implementation. It serves discovery (/version, /api, /api/v1, /apis, /apis/apps/v1),
Deployments (GET, PATCH with a minimal strategic-merge: containers and env merged by ``name``, ``null`` deletes a
key, ``$patch: delete`` deletes a list item),
the deployments/scale subresource, Pods listed by label selector, pods/log and SelfSubjectAccessReviews (allowed
unless listed in ``denied``). Every request is recorded in
``requests`` and every PATCH in ``patches`` (path, content type, parsed body), which is what the tests assert.

Rollout simulation: after a PATCH that changes the deployment spec, ``metadata.generation`` is bumped; the
status stays the old one for ``settle_after`` GETs of that deployment, then shows one GET of rollout in progress,
then becomes complete - unless ``stuck`` is set, in which case one replica never becomes available.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "platform": "linux/amd64"}

CORE_V1 = {
    "kind": "APIResourceList", "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "list", "watch", "create", "delete", "patch", "update"], "shortNames": ["po"]},
        {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    ],
}

APPS_V1 = {
    "kind": "APIResourceList", "groupVersion": "apps/v1",
    "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["deploy"]},
        {"name": "deployments/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
         "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]},
        {"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment",
         "verbs": ["get", "patch", "update"]},
    ],
}

AUTHORIZATION_V1 = {
    "kind": "APIResourceList", "groupVersion": "authorization.k8s.io/v1",
    "resources": [
        {"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview", "namespaced": False,
         "kind": "SelfSubjectAccessReview", "verbs": ["create"]},
    ],
}

API_GROUPS = {
    "kind": "APIGroupList", "apiVersion": "v1",
    "groups": [{"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
               {"name": "authorization.k8s.io",
                "versions": [{"groupVersion": "authorization.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "authorization.k8s.io/v1", "version": "v1"}}],
}


def strategic_merge(live, patch):
    """Minimal strategic merge: dicts recurse, lists of dicts with ``name`` merge by name, None deletes."""
    if not isinstance(live, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(live)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = strategic_merge(out.get(key, {}), value)
        elif (isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value)
              and isinstance(out.get(key), list)):
            merged = [copy.deepcopy(v) for v in out[key]]
            for item in value:
                if item.get("$patch") == "delete":
                    merged = [old for old in merged if old.get("name") != item["name"]]
                    continue
                for i, old in enumerate(merged):
                    if old.get("name") == item["name"]:
                        merged[i] = strategic_merge(old, item)
                        break
                else:
                    merged.append(strategic_merge({}, item))
            out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def deployment(name, namespace="production", replicas=2, container=None, env=None, image="athlete-ally/app:1"):
    labels = {"app": name}
    container = container or name
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "generation": 1, "resourceVersion": "1",
                     "uid": "uid-" + name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": container, "image": image,
                                         "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}]},
            },
        },
        "status": _complete_status(1, replicas),
    }


def _complete_status(generation, replicas):
    status = {"observedGeneration": generation}
    if replicas:
        status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas,
                      availableReplicas=replicas)
    return status


def _status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeKubernetes(object):
    def __init__(self, settle_after=1, stuck=False):
        self.deployments = {}  # (namespace, name) -> object
        self.pods = {}  # (namespace, name) -> (pod object, log text)
        self.requests = []  # (method, path with query)
        self.patches = []  # dicts: path, content_type, body
        self.settle_after = settle_after
        self.stuck = stuck
        # SelfSubjectAccessReview: "verb group/resource[/subresource]" strings the token may NOT do (RBAC denies)
        self.denied = set()
        self._pending = {}  # (namespace, name) -> GETs left before the rollout completes
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # ---- state helpers -------------------------------------------------------------------------------
    def add_deployment(self, obj):
        self.deployments[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = copy.deepcopy(obj)

    def add_pod(self, namespace, name, labels, log, phase="Running", container="app"):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
               "spec": {"containers": [{"name": container, "image": "x"}]},
               "status": {"phase": phase, "containerStatuses": [{"name": container, "ready": True}]}}
        self.pods[(namespace, name)] = (pod, log)

    def get(self, namespace, name):
        return self.deployments[(namespace, name)]

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def kubeconfig(self, namespace="production"):
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        }

    def writes(self):
        return [r for r in self.requests if r[0] not in ("GET",)]

    # ---- server -----------------------------------------------------------------------------------------
    def __enter__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, code, body, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def do_GET(self):
                self._dispatch("GET")

            def do_PATCH(self):
                self._dispatch("PATCH")

            def do_PUT(self):
                self._dispatch("PUT")

            def do_POST(self):
                self._dispatch("POST")

            def do_DELETE(self):
                self._dispatch("DELETE")

            def _dispatch(self, method):
                body = self._body() if method in ("PATCH", "PUT", "POST") else None
                with fake._lock:
                    fake.requests.append((method, self.path))
                    code, resp, ctype = fake.handle(method, self.path, body, self.headers.get("Content-Type"))
                self._send(code, resp, ctype)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    # ---- request handling -------------------------------------------------------------------------------
    def handle(self, method, raw_path, body, content_type):
        url = urlparse(raw_path)
        path = url.path.rstrip("/")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = path.strip("/").split("/")
        if method == "GET":
            static = {"/version": VERSION, "/api": {"kind": "APIVersions", "versions": ["v1"]},
                      "/api/v1": CORE_V1, "/apis": API_GROUPS, "/apis/apps/v1": APPS_V1,
                      "/apis/authorization.k8s.io/v1": AUTHORIZATION_V1}
            if path in static:
                return 200, static[path], "application/json"
        if method == "POST" and path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
            attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
            what = "%s %s/%s%s" % (attrs.get("verb"), attrs.get("group", ""), attrs.get("resource"),
                                   "/" + attrs["subresource"] if attrs.get("subresource") else "")
            assert "__omit_place_holder__" not in json.dumps(attrs), attrs  # a template leaked Ansible's omit
            review = dict(body, status={"allowed": what not in self.denied})
            if what in self.denied:
                review["status"]["reason"] = "RBAC: the fake denies %s" % what
            return 201, review, "application/json"
        # /apis/apps/v1/namespaces/<ns>/deployments/<name>[/scale]
        if parts[:3] == ["apis", "apps", "v1"] and len(parts) >= 7 and parts[3] == "namespaces" \
                and parts[5] == "deployments":
            key = (parts[4], parts[6])
            if key not in self.deployments:
                return 404, _status(404, "NotFound", 'deployments.apps "%s" not found' % key[1]), "application/json"
            sub = parts[7] if len(parts) > 7 else None
            return self._deployment(method, key, sub, body, content_type, raw_path)
        # /api/v1/namespaces/<ns>/pods[/<name>[/log]]
        if parts[:2] == ["api", "v1"] and len(parts) >= 5 and parts[2] == "namespaces" and parts[4] == "pods":
            ns = parts[3]
            if len(parts) == 5 and method == "GET":
                return 200, self._pod_list(ns, query.get("labelSelector", "")), "application/json"
            key = (ns, parts[5])
            if key not in self.pods:
                return 404, _status(404, "NotFound", 'pods "%s" not found' % key[1]), "application/json"
            pod, log = self.pods[key]
            if len(parts) == 7 and parts[6] == "log":
                lines = log.splitlines()
                if "tailLines" in query:
                    lines = lines[-int(query["tailLines"]):]
                return 200, ("".join(line + "\n" for line in lines)).encode(), "text/plain"
            return 200, pod, "application/json"
        return 404, _status(404, "NotFound", "fake server does not serve %s %s" % (method, path)), \
            "application/json"

    def _pod_list(self, ns, selector):
        wanted = dict(s.split("=", 1) for s in selector.split(",") if "=" in s)
        items = [pod for (pns, _name), (pod, _version) in sorted(self.pods.items())
                 if pns == ns and all(pod["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}

    def _deployment(self, method, key, sub, body, content_type, raw_path):
        obj = self.deployments[key]
        if sub == "scale":
            if method == "PATCH":
                self.patches.append({"path": raw_path, "content_type": content_type, "body": body})
                self._apply(key, {"spec": {"replicas": body["spec"]["replicas"]}})
                obj = self.deployments[key]
            return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                         "metadata": {"name": key[1], "namespace": key[0]},
                         "spec": {"replicas": obj["spec"]["replicas"]},
                         "status": {"replicas": obj["status"].get("replicas", 0)}}, "application/json"
        if sub is not None:
            return 404, _status(404, "NotFound", "no subresource " + sub), "application/json"
        if method == "GET":
            self._tick(key)
            return 200, self.deployments[key], "application/json"
        if method == "PATCH":
            self.patches.append({"path": raw_path, "content_type": content_type, "body": body})
            if "dryRun" in raw_path:
                return 200, strategic_merge(obj, body), "application/json"
            self._apply(key, body)
            return 200, self.deployments[key], "application/json"
        return 405, _status(405, "MethodNotAllowed", method), "application/json"

    def _apply(self, key, patch):
        old = self.deployments[key]
        new = strategic_merge(old, patch)
        if new["spec"] != old["spec"]:
            gen = old["metadata"]["generation"] + 1
            new["metadata"]["generation"] = gen
            new["metadata"]["resourceVersion"] = str(int(old["metadata"]["resourceVersion"]) + 1)
            self._pending[key] = self.settle_after
        self.deployments[key] = new

    def _tick(self, key):
        """Advance the simulated rollout by one observed GET.

        Like a real API server right after a PATCH, the first ``settle_after`` GETs still return the old status
        untouched (it looks complete, but for the previous generation); the next GET shows the rollout in
        progress (new generation observed, surge pod not yet available); after that it is complete, unless
        ``stuck``, where one replica stays unavailable forever.
        """
        if key not in self._pending:
            return
        obj = self.deployments[key]
        replicas = obj["spec"]["replicas"]
        if self._pending[key] > 0:
            self._pending[key] -= 1
            return
        if self._pending[key] == 0:
            self._pending[key] = -1
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": replicas + 1,
                             "updatedReplicas": 1 if replicas else 0, "readyReplicas": replicas,
                             "availableReplicas": replicas, "unavailableReplicas": 1}
            return
        status = _complete_status(obj["metadata"]["generation"], replicas)
        if self.stuck and replicas:
            status.update(availableReplicas=replicas - 1, readyReplicas=replicas - 1, unavailableReplicas=1)
        else:
            del self._pending[key]
        obj["status"] = status
