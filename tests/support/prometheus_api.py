"""The lab Prometheus' HTTP API as the monitoring tests read it (independent of module_utils/soak.py)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request


def prom(lab, path, **params):
    """``data`` of a GET on ``path`` (``/api/v1/...``) with ``params``; a reply not ``success`` fails the test."""
    url = lab.env["PROMETHEUS_URL"] + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        reply = json.loads(resp.read())
    assert reply["status"] == "success", reply
    return reply["data"]
