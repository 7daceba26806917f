"""A small FAKE AWX controller API (/api/v2), just enough for the awx.awx modules playbooks/awx_configure.yml calls.

It is NOT AWX. It answers as AWX 24 does for what matters to those modules (checked against AWX's API and the
awx.awx 24.6.1 module code; see docs/AWX.md):

- list endpoints filter on exact query parameters (``name``, ``organization``, ``credential_type``, ``identifier``,
  ``workflow_job_template``, ``or__id``/``or__name``) and paginate (``page_size`` 25, ``next`` as a path);
- credentials answer ``$encrypted$`` for a set secret input; a POST/PATCH replaces the whole ``inputs`` dict and
  keeps a stored secret only where the request sends ``$encrypted$`` (ansible/awx#13169: inputs sent without a
  secret erase it);
- a credential type's ``inputs`` cannot change once a credential uses it (403, as AWX's CredentialTypeSerializer);
- ``/workflow_job_template_nodes/N/create_approval_template/`` creates the approval template; the approval
  template has no ``success_nodes``/``failure_nodes``/``always_nodes``/``credentials`` sub-endpoints: 404
  (ansible/awx#8777);
- association sub-endpoints (``credentials``, ``success_nodes``, ...) take ``{"id": N}`` and
  ``{"id": N, "disassociate": true}`` and answer 204; one credential per type; a workflow node takes credentials
  only if its job template asks for credentials on launch;
- creating a project starts an update that is at once successful; surveys live at ``.../survey_spec/``.

Every request is recorded in ``requests`` (method, path, query, body) for the tests to assert on.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlparse

ENCRYPTED = "$encrypted$"
PAGE_SIZE = 25
VERSION = "24.6.1"

# The built-in types the configuration uses (inputs as AWX defines them; only ids and secret flags matter here).
MANAGED_TYPES = [
    {"name": "Amazon Web Services", "kind": "cloud", "namespace": "aws", "inputs": {"fields": [
        {"id": "username", "type": "string", "label": "Access Key"},
        {"id": "password", "type": "string", "label": "Secret Key", "secret": True},
        {"id": "security_token", "type": "string", "label": "STS Token", "secret": True}],
        "required": ["username", "password"]}},
    {"name": "OpenShift or Kubernetes API Bearer Token", "kind": "kubernetes", "namespace": "kubernetes_bearer_token",
     "inputs": {"fields": [
         {"id": "host", "type": "string", "label": "OpenShift or Kubernetes API Endpoint"},
         {"id": "bearer_token", "type": "string", "label": "API authentication bearer token", "secret": True},
         {"id": "verify_ssl", "type": "boolean", "label": "Verify SSL"},
         {"id": "ssl_ca_cert", "type": "string", "label": "Certificate Authority data", "secret": True,
          "multiline": True}],
         "required": ["host", "bearer_token"]}},
]

ASSOCIATIONS = {
    "job_templates": ("credentials", "labels", "instance_groups", "notification_templates_started",
                      "notification_templates_success", "notification_templates_error"),
    "workflow_job_templates": ("labels", "notification_templates_started", "notification_templates_success",
                               "notification_templates_error", "notification_templates_approvals"),
    "workflow_job_template_nodes": ("success_nodes", "failure_nodes", "always_nodes", "credentials", "labels",
                                    "instance_groups"),
    "organizations": ("instance_groups", "galaxy_credentials", "notification_templates_started",
                      "notification_templates_success", "notification_templates_error",
                      "notification_templates_approvals"),
    "inventories": ("instance_groups", "input_inventories"),
    "projects": ("notification_templates_started", "notification_templates_success", "notification_templates_error"),
    "inventory_sources": ("notification_templates_started", "notification_templates_success",
                          "notification_templates_error"),
}
UNIFIED = ("job_templates", "workflow_job_templates", "projects", "inventory_sources", "workflow_approval_templates")
TYPES = {"credential_types": "credential_type", "credentials": "credential", "organizations": "organization",
         "execution_environments": "execution_environment", "projects": "project", "inventories": "inventory",
         "inventory_sources": "inventory_source", "job_templates": "job_template",
         "workflow_job_templates": "workflow_job_template", "workflow_job_template_nodes": "workflow_job_template_node",
         "workflow_approval_templates": "workflow_approval_template", "project_updates": "project_update"}


class Reject(Exception):
    def __init__(self, code, body):
        super().__init__(code)
        self.code, self.body = code, body


class FakeAWX(object):
    def __init__(self, token, page_size=PAGE_SIZE):
        self.token, self.page_size = token, page_size
        self.lock = threading.Lock()
        self.objects = dict((kind, {}) for kind in TYPES)
        self.links = {}  # (kind, id, association) -> [ids]
        self.next_id = 1
        self.requests = []
        for ct in MANAGED_TYPES:
            self._store("credential_types", dict(ct, managed=True, description="", injectors={}))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # -- the store ---------------------------------------------------------------------------------------------
    def _store(self, kind, fields):
        oid = self.next_id
        self.next_id += 1
        url = "/api/v2/%s/%d/" % (kind, oid)
        obj = dict(fields, id=oid, url=url, type=TYPES[kind], related={}, summary_fields={})
        for assoc in ASSOCIATIONS.get(kind, ()):
            obj["related"][assoc] = url + assoc + "/"
            self.links[(kind, oid, assoc)] = []
        if kind in ("job_templates", "workflow_job_templates"):
            obj["related"]["survey_spec"] = url + "survey_spec/"
            obj["survey_spec"] = {}
        self.objects[kind][oid] = obj
        return obj

    def find(self, kind, **match):
        return [o for o in self.objects[kind].values() if all(o.get(k) == v for k, v in match.items())]

    def secret_fields(self, type_id):
        fields = self.objects["credential_types"][type_id]["inputs"].get("fields", [])
        return set(f["id"] for f in fields if f.get("secret"))

    def stored_inputs(self, name):
        """The credential's real inputs, secrets in clear (what a job would get injected)."""
        (cred,) = self.find("credentials", name=name)
        return dict(cred["inputs"])

    def public(self, kind, obj):
        out = copy.deepcopy(dict((k, v) for k, v in obj.items() if k != "survey_spec"))
        if kind == "credentials":
            secret = self.secret_fields(obj["credential_type"])
            out["inputs"] = dict((k, ENCRYPTED if k in secret and v not in ("", None) else v)
                                 for k, v in obj["inputs"].items())
        return out

    def _merge_inputs(self, cred, type_id, new):
        """AWX semantics: the request's inputs replace the stored ones; $encrypted$ keeps a stored secret."""
        fields = set(f["id"] for f in self.objects["credential_types"][type_id]["inputs"].get("fields", []))
        unknown = sorted(set(new) - fields)
        if unknown:
            raise Reject(400, {"inputs": dict((k, ["'%s' is not a valid field" % k]) for k in unknown)})
        old = (cred or {}).get("inputs", {})
        return dict((k, old.get(k, "") if v == ENCRYPTED else v) for k, v in new.items())

    def _check_type_change(self, ct, body):
        if "inputs" in body and body["inputs"] != ct["inputs"] and self.find("credentials", credential_type=ct["id"]):
            raise Reject(403, {"detail": "Modifications to inputs are not allowed for credential types that are in "
                                         "use"})
        if ct.get("managed") and set(body) - {"name"}:
            raise Reject(403, {"detail": "Modifications not allowed for managed credential types"})

    def create(self, kind, body):
        if kind in self.objects and "name" in body and kind not in ("credentials", "workflow_job_template_nodes"):
            scope = {"organization": body["organization"]} if "organization" in body else {}
            if kind == "inventory_sources":
                scope = {"inventory": body.get("inventory")}
            if self.find(kind, name=body["name"], **scope):
                raise Reject(400, {"__all__": ["%s with this Name and Organization already exists." % TYPES[kind]]})
        if kind == "credentials":
            body = dict(body, inputs=self._merge_inputs(None, body["credential_type"], body.get("inputs") or {}))
        if kind == "inventories":
            body = dict(body, kind=body.get("kind") or "")
        obj = self._store(kind, body)
        if kind == "projects":
            update = self._store("project_updates", {"name": obj["name"], "status": "successful", "failed": False,
                                                     "finished": "2026-01-01T00:00:00Z", "project": obj["id"]})
            obj["summary_fields"]["current_update"] = {"id": update["id"], "status": "pending"}
            obj["related"]["update"] = obj["url"] + "update/"
            obj["scm_revision"] = ""
        if kind == "workflow_job_template_nodes":
            obj["related"]["create_approval_template"] = obj["url"] + "create_approval_template/"
            obj.setdefault("unified_job_template", None)
            self._node_related(obj)
        return obj

    def _node_related(self, node):
        ujt = node.get("unified_job_template")
        for kind in UNIFIED:
            if ujt in self.objects[kind]:
                node["related"]["unified_job_template"] = "/api/v2/%s/%d/" % (kind, ujt)

    def update(self, kind, obj, body):
        if kind == "credential_types":
            self._check_type_change(obj, body)
        if kind == "credentials":
            body = dict(body)
            if "inputs" in body:
                body["inputs"] = self._merge_inputs(obj, body.get("credential_type", obj["credential_type"]),
                                                    body["inputs"])
        if kind == "inventories" and "kind" in body:
            body = dict(body, kind=body["kind"] or "")
        obj.update(dict((k, v) for k, v in body.items() if k not in ("id", "url", "related", "summary_fields")))
        if kind == "workflow_job_template_nodes":
            self._node_related(obj)
        return obj

    # -- the HTTP side -----------------------------------------------------------------------------------------
    def listing(self, kind, query, path):
        if kind == "unified_job_templates":
            items = [o for k in UNIFIED for o in self.objects[k].values()]
        else:
            items = list(self.objects[kind].values())
        filters = dict((k, v) for k, v in query.items() if k not in ("page", "page_size"))
        ors = dict((k[4:], v) for k, v in filters.items() if k.startswith("or__"))
        ands = dict((k, v) for k, v in filters.items() if not k.startswith("or__"))

        def matches(obj):
            if any(str(obj.get(k)) != v for k, v in ands.items()):
                return False
            return not ors or any(str(obj.get(k)) == v for k, v in ors.items())

        found = sorted((o for o in items if matches(o)), key=lambda o: o["id"])
        return self.page(None, found, query, path)

    def page(self, kind, found, query, path):
        """One page of ``found`` (AWX: ``page``/``page_size``, ``next`` a path with the same filters)."""
        page = int(query.pop("page", "1"))
        size = int(query.pop("page_size", str(self.page_size)))
        chunk = found[(page - 1) * size:page * size]
        nxt = None
        if page * size < len(found):
            nxt = path + "?" + urlencode(dict(query, page=page + 1, page_size=size))
        return {"count": len(found), "next": nxt, "previous": None,
                "results": [self.public(kind or o["url"].split("/")[3], o) for o in chunk]}

    def route(self, method, path, query, body):
        parts = [p for p in path.split("/") if p]
        if parts[:2] != ["api", "v2"]:
            raise Reject(404, {"detail": "Not found."})
        parts = parts[2:]
        if not parts:
            return 200, {"ping": "/api/v2/ping/"}
        kind = parts[0]
        if kind != "unified_job_templates" and kind not in self.objects:
            raise Reject(404, {"detail": "Not found."})
        if len(parts) == 1:
            if method == "GET":
                return 200, self.listing(kind, dict(query), path)
            if method == "POST" and kind != "unified_job_templates":
                return 201, self.public(kind, self.create(kind, body))
            raise Reject(405, {"detail": "Method not allowed."})
        obj = self.objects[kind].get(int(parts[1])) if parts[1].isdigit() else None
        if obj is None:
            raise Reject(404, {"detail": "Not found."})
        if len(parts) == 2:
            if method == "GET":
                return 200, self.public(kind, obj)
            if method in ("PATCH", "PUT"):
                return 200, self.public(kind, self.update(kind, obj, body))
            if method == "DELETE":
                del self.objects[kind][obj["id"]]
                return 204, None
            raise Reject(405, {"detail": "Method not allowed."})
        sub = parts[2]
        if sub == "survey_spec" and kind in ("job_templates", "workflow_job_templates"):
            if method == "GET":
                return 200, obj["survey_spec"]
            obj["survey_spec"] = {} if method == "DELETE" else body
            return 200, {}
        if sub == "create_approval_template" and kind == "workflow_job_template_nodes" and method == "POST":
            approval = self._store("workflow_approval_templates", dict(body))
            obj["unified_job_template"] = approval["id"]
            self._node_related(obj)
            return 201, self.public("workflow_approval_templates", approval)
        if (kind, obj["id"], sub) in self.links:
            return self.associate(kind, obj, sub, method, body, path, query)
        raise Reject(404, {"detail": "Not found."})

    def associate(self, kind, obj, sub, method, body, path, query):
        ids = self.links[(kind, obj["id"], sub)]
        target = "credentials" if sub == "credentials" else "workflow_job_template_nodes" if sub.endswith("_nodes") \
            else sub
        if method == "GET":
            items = [self.objects[target][i] for i in ids if i in self.objects.get(target, {})]
            return 200, self.page(target, items, dict(query), path)
        if method != "POST":
            raise Reject(405, {"detail": "Method not allowed."})
        oid = int(body["id"])
        if body.get("disassociate"):
            if oid in ids:
                ids.remove(oid)
            return 204, None
        if target in self.objects and oid not in self.objects[target]:
            raise Reject(400, {"msg": "Object with id %d not found" % oid})
        if sub == "credentials" and kind == "workflow_job_template_nodes":
            jt = self.objects["job_templates"].get(obj.get("unified_job_template"))
            if not jt or not jt.get("ask_credential_on_launch"):
                raise Reject(400, {"msg": "Related template is not configured to accept credentials on launch."})
        if sub == "credentials":
            new_type = self.objects["credentials"][oid]["credential_type"]
            if any(self.objects["credentials"][i]["credential_type"] == new_type for i in ids if i != oid):
                raise Reject(400, {"error": "Cannot assign multiple %s credentials." %
                                            self.objects["credential_types"][new_type]["name"]})
        if oid not in ids:
            ids.append(oid)
        return 204, None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the tests read fake.requests
                pass

            def _do(self):
                url = urlparse(self.path)
                query = dict(parse_qsl(url.query, keep_blank_values=True))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                with fake.lock:
                    fake.requests.append((self.command, url.path, query, body))
                    if self.headers.get("Authorization") != "Bearer %s" % fake.token:
                        code, payload = 401, {"detail": "Authentication credentials were not provided."}
                    else:
                        try:
                            code, payload = fake.route(self.command, url.path, query, body)
                        except Reject as exc:
                            code, payload = exc.code, exc.body
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-API-Product-Name", "AWX")
                self.send_header("X-API-Product-Version", VERSION)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _do  # noqa: N815 - http.server's naming

        return Handler
