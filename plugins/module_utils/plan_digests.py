# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Fingerprints of a migration plan, and the check that ties a production run to its staging rehearsal.

``plan_digest`` is the whole plan's (the go/no-go gate records it with a passed preflight); ``topology_digest`` is
what staging and production must share, so that a production plan can require that staging ran this very topology
(``migration.require_staging_validation``, ``migration.staging_validated.topology_digest``). Pure, no I/O.
"""

from __future__ import annotations

import hashlib
import json

from ansible_collections.athlete_ally.nats.plugins.module_utils.plan_values import HEX_DIGEST


def plan_digest(migration):
    """sha256 hex of the plan's canonical JSON: the same plan gives the same digest whatever its key order."""
    text = json.dumps(_canonical(migration), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def topology(migration):
    """What must be the same in staging and production: the streams, their subjects, the groups (phase, name, stream,
    subjects, consumers' names and filters), the DLQ's stream and subjects, the service modes. Nothing that
    differs between the two by design (endpoints, durations, sizes, thresholds, backup, soak lengths). Lists whose
    order means nothing are sorted; a mode value keeps its order (the service binds the first candidate)."""
    m = migration if isinstance(migration, dict) else {}

    def part(key):
        return m.get(key) if isinstance(m.get(key), dict) else {}

    def subjects(value):
        return sorted(str(s) for s in value) if isinstance(value, list) else value

    def consumer(c):
        return {k: subjects(c.get(k)) for k in ("name", "filter_subject", "filter_subjects") if c.get(k) is not None}

    groups = []
    for g in m.get("groups") if isinstance(m.get("groups"), list) else []:
        g = g if isinstance(g, dict) else {}
        consumers = [consumer(c) for c in g.get("consumers") or [] if isinstance(c, dict)]
        groups.append(dict(phase=g.get("phase"), name=g.get("name"), stream=g.get("stream"),
                           subjects=subjects(g.get("subjects")),
                           consumers=sorted(consumers, key=lambda c: str(c.get("name")))))
    modes = {str(mode): {str(k): ",".join(t.strip() for t in str(x).split(",")) for k, x in env.items()}
             for mode, env in part("modes").items() if isinstance(env, dict)}
    legacy, dlq = part("legacy"), part("dlq")
    return dict(legacy=dict(stream=legacy.get("stream"), subjects=subjects(legacy.get("subjects"))), groups=groups,
                dlq=dict(stream=dlq.get("stream"), subjects=subjects(dlq.get("subjects"))), modes=modes)


def topology_digest(migration):
    """sha256 hex of topology(): equal for a staging and a production plan of the same migration."""
    return plan_digest(topology(migration))


def _canonical(value):
    # Keys as strings: YAML's {0: 900} and JSON's {"0": 900} are one plan, and mixed key types would not sort.
    if isinstance(value, dict):
        return {str(k): _canonical(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(x) for x in value]
    return value


def staging_errors(e, m):
    """Production may require that staging ran this very topology: validate.yml on staging prints the digest, the
    production inventory carries it. Set, it must match; required, it must be set."""
    required = e.boolean("migration.require_staging_validation", m.get("require_staging_validation"), required=False)
    given = m.get("staging_validated")
    if given is None and not required:
        return
    key, ours = "migration.staging_validated.topology_digest", topology_digest(m)
    todo = "run the migration on staging with this topology first and copy the digest its validate.yml prints"
    theirs = given.get("topology_digest") if isinstance(given, dict) else None
    if given is not None and not isinstance(given, dict):
        e.add("migration.staging_validated", "expected a mapping {topology_digest: <hex>}, got %r; %s" % (given, todo))
    elif theirs in (None, ""):
        e.add(key, "missing; this plan's topology is %s: %s" % (ours[:12], todo))
    elif theirs != ours:
        # short prefixes: enough to tell them apart, and no full digest to paste in place of a staging run's
        text = str(theirs)
        shown = text[:12] if HEX_DIGEST.fullmatch(text) else repr(text if len(text) <= 32 else text[:29] + "...")
        e.add(key, "staging validated topology %s, this plan's is %s; %s" % (shown, ours[:12], todo))
