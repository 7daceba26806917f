# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""One HTTP request with the standard library: Prometheus' HTTP API (migration_soak) and the service's ingest API
and /metrics (migration_verify, service_contract).

Why not ansible.module_utils.urls.open_url: a module run imports its module_utils from a zip of sources, so it
compiles each of them again every run, and urls.py is about 1,400 lines that pull in cryptography
(bench/payload_cost.py: about 0.1 s of CPU per run). What open_url gave these calls is kept: certificates verified against the system CA
store (OpenSSL's SSL_CERT_FILE/SSL_CERT_DIR honoured), proxies from the environment (https_proxy, no_proxy, ...),
credentials in the URL (``https://user:pass@host``) or else in ``~/.netrc`` (or $NETRC) sent as basic auth,
redirects followed for GET and HEAD only (open_url's ``follow_redirects='safe'``)."""

from __future__ import annotations

import base64
import http.client
import netrc
import os
import ssl
import urllib.request
from urllib.error import URLError
from urllib.parse import unquote, urlsplit, urlunsplit

# What "no answer at all" raises (refused, timed out, DNS, TLS, a broken reply); an HTTP error status raises
# urllib.error.HTTPError, a subclass of URLError: catch it first, it is an answer.
NO_ANSWER = (URLError, OSError, ValueError, http.client.HTTPException)


class _SafeRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect of a POST is not followed (urllib would resend it as a GET without its body): the redirect
    status is the answer."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.get_method() not in ("GET", "HEAD"):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def credentials(url):
    """``(url without userinfo, (user, password) or None)``: from the URL, else from the netrc file for its host."""
    parts = urlsplit(url)
    if parts.username is not None:
        bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        return bare, (unquote(parts.username), unquote(parts.password or ""))
    try:
        found = netrc.netrc(os.environ.get("NETRC")).authenticators(parts.hostname or "")
    except (OSError, netrc.NetrcParseError):  # no netrc (the usual case) or one that is not ours to judge
        found = None
    return url, ((found[0], found[2]) if found else None)


def request(url, method="GET", body=None, headers=None, timeout=10):
    """The response (``.status``, ``.read()``; a context manager). Raises urllib.error.HTTPError for an error
    status (``.code``, ``.read()``), one of NO_ANSWER when there was no answer."""
    url, login = credentials(url)
    headers = dict(headers or {})
    if login is not None:
        token = base64.b64encode(("%s:%s" % login).encode("utf-8")).decode("ascii")
        headers.setdefault("Authorization", "Basic " + token)
    data = body.encode("utf-8") if isinstance(body, str) else body
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl.create_default_context()),
                                         _SafeRedirect)
    return opener.open(urllib.request.Request(url, data=data, headers=headers, method=method), timeout=timeout)
