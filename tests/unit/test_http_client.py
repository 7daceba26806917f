"""module_utils/http_client.py against a real HTTP server on localhost: what open_url gave the soak's and the
verification's requests - basic auth from the URL or from a netrc file, redirects followed for GET only, an error
status as an answer, no answer as one line (verify.http_request)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import HTTPError

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.module_utils import http_client, verify  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError  # noqa: E402


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_args):  # quiet test output
        pass

    def answer(self):
        if self.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", "/echo")
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.dumps({"method": self.command, "path": self.path,
                           "auth": self.headers.get("Authorization"),
                           "body": self.rfile.read(length).decode() if length else None}).encode()
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def test_get_and_post_with_credentials_in_the_url(server):
    with http_client.request(server.replace("//", "//prom%40ops:s3cr%3At@") + "/echo") as resp:
        seen = json.loads(resp.read())
    assert resp.status == 200 and seen["method"] == "GET" and seen["auth"] == basic("prom@ops", "s3cr:t")
    status, text = verify.http_request("POST", server + "/echo", json.dumps({"a": 1}), 5)
    assert status == 200 and json.loads(json.loads(text)["body"]) == {"a": 1} and json.loads(text)["auth"] is None


def test_get_follows_a_redirect_post_gets_it_as_the_answer(server):
    with http_client.request(server + "/moved") as resp:
        assert json.loads(resp.read())["path"] == "/echo"
    status, _text = verify.http_request("POST", server + "/moved", "{}", 5)
    assert status == 302


def test_error_status_is_an_answer_and_no_answer_is_one_line(server):
    with pytest.raises(HTTPError) as err:
        http_client.request(server + "/fail")
    assert err.value.code == 500
    assert verify.http_request("GET", server + "/fail", None, 5)[0] == 500
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(JetStreamError) as exc:
            verify.http_request("GET", "http://127.0.0.1:%d/x" % sock.getsockname()[1], None, 2)
    assert "no answer" in str(exc.value) and "\n" not in str(exc.value)


def test_netrc_credentials_for_the_host(server, tmp_path):
    """A fresh interpreter with NETRC set, as a module run would see it (the netrc file is read per request)."""
    rc = tmp_path / "netrc"
    rc.write_text("machine 127.0.0.1 login ops password pw-1\n")
    rc.chmod(0o600)
    code = ("import sys, json; sys.path.insert(0, %r)\n"
            "from ansible_collections.athlete_ally.nats.plugins.module_utils import http_client\n"
            "print(json.loads(http_client.request(%r).read())['auth'])"
            % (str(ROOT / ".collections"), server + "/echo"))
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NETRC=str(rc)),
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == basic("ops", "pw-1")
