# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

from __future__ import annotations


class ModuleDocFragment(object):
    # Paired with plugins/module_utils/args_common.py:jetstream_argument_spec().
    DOCUMENTATION = r"""
options:
  servers:
    description:
      - NATS server URLs; the client tries them in order and fails over.
      - Falls back to the comma-separated E(NATS_URL) environment variable.
    type: list
    elements: str
    default: ['nats://127.0.0.1:4222']
    aliases: [server_url]
  user:
    description: User name for user/password authentication (E(NATS_USER)).
    type: str
  password:
    description: Password for O(user) (E(NATS_PASSWORD)). Never logged.
    type: str
  token:
    description: Authentication token (E(NATS_TOKEN)). Never logged.
    type: str
  creds_file:
    description:
      - Path to a decentralized-auth (JWT) C(.creds) file holding a user JWT and its nkey seed, as written by
        C(nsc generate creds) (E(NATS_CREDS)).
      - The file is checked before connecting; a file without both blocks fails naming the file, never its content.
    type: path
  nkey_seed:
    description:
      - A user NKey seed (C(SU...)) used to sign the server nonce (E(NATS_NKEY_SEED)). Never logged.
      - Mutually exclusive with O(nkey_file), O(creds_file) and O(token).
    type: str
  nkey_file:
    description:
      - Path to a file holding a user NKey seed, like the C(nats) CLI's C(--nkey) (E(NATS_NKEY)).
      - Mutually exclusive with O(nkey_seed), O(creds_file) and O(token).
    type: path
  tls_ca:
    description: CA bundle used to verify the server certificate (E(NATS_CA)). Enables TLS.
    type: path
  tls_cert:
    description: Client certificate for mutual TLS (E(NATS_CERT)).
    type: path
  tls_key:
    description: Private key for O(tls_cert) (E(NATS_KEY)).
    type: path
  tls_hostname:
    description: Host name to verify the server certificate against, when it differs from the URL's (E(NATS_TLS_HOSTNAME)).
    type: str
  connect_timeout:
    description: How long to wait for each connection attempt (seconds, or a duration such as V(10s)).
    type: raw
    default: 5.0
  request_timeout:
    description: How long to wait for each JetStream API reply (seconds, or a duration such as V(10s)).
    type: raw
    default: 5.0
  retry_budget:
    description:
      - Seconds during which transient cluster failures are retried, with exponential backoff (0.25s doubling
        to 2s), for example while a stream or meta leader is being elected after a node died (E(NATS_RETRY_BUDGET)).
      - Retried are request timeouts, no responders while JetStream restarts, a lost connection (the client
        reconnects to another server in O(servers)) and the server's C(JetStream system temporarily unavailable),
        C(JetStream cluster can not handle request), C(no suitable peers), C(incomplete results) and
        C(too many requests) replies.
      - Reads are retried freely; a write is sent again only when the failure proves it was not applied, or after
        re-reading the state showed it was not. Other server errors (such as overlapping subjects) are never retried.
      - Each retry is reported as a warning. V(0) disables retries.
    type: raw
    default: 30.0
  domain:
    description: JetStream domain; the API prefix becomes C($JS.<domain>.API) (E(NATS_JS_DOMAIN)).
    type: str
  api_prefix:
    description: Explicit JetStream API prefix, for imported accounts (E(NATS_JS_API_PREFIX)). Default C($JS.API).
    type: str
notes:
  - "Authentication modes: user/password, token, nkey (O(nkey_seed) or O(nkey_file)), creds (JWT, O(creds_file)),
    each optionally over TLS or mutual TLS (O(tls_ca), O(tls_cert), O(tls_key)). A refused credential fails with
    one line naming the mode; secrets never appear in the output. Empty values (an AWX injector that rendered
    nothing) count as unset."
  - Speaks raw JSON on C($JS.API.*) and merges with the live configuration, so fields this collection
    does not know are kept rather than reset by an update.
requirements:
  - nats-py >= 2.6
  - nkeys (for O(nkey_seed), O(nkey_file) and O(creds_file))
"""
