# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Go/no-go: a phase writes only after a preflight of the same plan passed recently, and only one run at a time.

``state=preflight_passed`` (preflight.yml, once every check passed) records ``{digest, passed_at, by}`` under
``preflight`` in the control bucket. ``state=enter`` (first task of every writing playbook) decides from that
record (``decide``) and takes the run lease (lease.py); ``state=release`` (last task) gives the lease back.
A skip (``skip_preflight``) is allowed, loudly, and recorded under ``preflight_skipped``.

Every result says ``changed=false``: the records and the lease are the run's bookkeeping, not the migration's state,
so a run that changes nothing in the migration still reports ``changed=0`` (idempotence), and --check writes none.
"""

from __future__ import annotations

import time

from ansible_collections.athlete_ally.nats.plugins.module_utils import lease as leases
from ansible_collections.athlete_ally.nats.plugins.module_utils.control import Conflict, ControlJournal
from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import ago
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import JetStreamClient

PREFLIGHT = "preflight"
SKIPPED = "preflight_skipped"


def decide(record, digest, now, valid_for):
    """``(ok, reason)``: whether ``record`` (the last passed preflight, or None) allows a run of plan ``digest``."""
    if not record:
        return False, "no preflight has passed for this migration"
    if record.get("digest") != digest:
        return False, ("the plan changed since the last passed preflight (%s, plan %s; this run's plan is %s)"
                       % (leases.iso(record.get("passed_at") or 0), str(record.get("digest"))[:12], digest[:12]))
    age = now - float(record.get("passed_at") or 0)
    if age > valid_for:
        return False, ("the last passed preflight of this plan is %s old (%s), more than migration.preflight_valid_for "
                       "(%s)" % (ago(age), leases.iso(record.get("passed_at") or 0), ago(valid_for)))
    return True, "preflight of this plan passed %s ago (%s)" % (ago(age), leases.iso(record.get("passed_at")))


def check_params(params):
    """What the argument spec cannot say: entering with the preflight required needs the plan's digest."""
    if params["state"] == "enter" and params["require_preflight"] and not params["digest"]:
        raise JetStreamError("migration_gate: digest is required to check the preflight (state=enter)")


def run(module, js):
    p = module.params
    journal = ControlJournal(js, p["bucket"], p["replicas"])
    me = leases.this_run(p["label"])
    now = time.time()
    check = module.check_mode
    if p["state"] == "preflight_passed":
        record = {"digest": p["digest"], "passed_at": int(now), "by": "%s@%s" % (me["user"], me["host"]),
                  "what": me["what"], "label": me["label"]}
        if check:
            return dict(changed=False, record=record,
                        msg="check mode: preflight passed; a real run records it for plan %s" % p["digest"][:12])
        journal.ensure()
        journal.put(PREFLIGHT, record)
        return dict(changed=False, record=record,
                    msg="preflight passed for plan %s: phases may run until %s (migration.preflight_valid_for)"
                        % (p["digest"][:12], leases.iso(now + p["valid_for"])))
    if p["state"] == "release":
        if check:
            return dict(changed=False, msg="check mode: no lease was taken")
        released = journal.exists() and leases.release(journal, me)
        return dict(changed=False, released=bool(released),
                    msg="lease released" if released else "this run held no lease")
    return enter(module, js, journal, me, now)


def enter(module, js, journal, me, now):
    p = module.params
    check = module.check_mode
    result = dict(changed=False)
    if p["require_preflight"]:
        record, _rev = journal.get(PREFLIGHT)
        ok, reason = decide(record, p["digest"], now, p["valid_for"])
        result.update(preflight=record, preflight_ok=ok, preflight_reason=reason)
        if not ok:
            hint = "run '%s' first" % p["preflight_command"]
            if check:
                module.warn("check mode rehearsal without a passed preflight: the real run would be refused (%s; %s)"
                            % (reason, hint))
            elif p["skip_preflight"]:
                module.warn("PROCEEDING WITHOUT A PASSED PREFLIGHT (migration_skip_preflight=true): %s; this is "
                            "recorded in the journal (%s / %s)" % (reason, p["bucket"], SKIPPED))
                journal.ensure()
                journal.put(SKIPPED, {"digest": p["digest"], "at": int(now), "reason": reason,
                                      "by": "%s@%s" % (me["user"], me["host"]), "what": me["what"],
                                      "label": me["label"]})
                result["skipped_preflight"] = True
            else:
                raise JetStreamError("refused: %s; %s (or pass -e migration_skip_preflight=true to proceed without "
                                     "it, recorded in the journal)" % (reason, hint))
    if check:
        return dict(result, msg="check mode: no lease taken")
    journal.ensure()
    lapse = p["lease_lapse"]
    try:
        verdict, reason, held = leases.acquire(journal, me, lapse, now)
    except Conflict:
        held, _rev = journal.get(leases.KEY)
        verdict, reason = "refuse", "another run took the migration lease a moment ago: %s" % leases.describe(held or {})
    if verdict == "refuse":
        raise JetStreamError("refused: %s" % reason, lease=held)
    if verdict == "take_over":
        module.warn("took over the migration lease: %s" % reason)
    heartbeat_alive = leases.process_alive(held.get("heartbeat_pid") or 0, held.get("heartbeat_pid_start") or -1)
    if verdict != "renew" or not heartbeat_alive:
        params = dict(module.params)
        pid = leases.start_heartbeat(lambda: JetStreamClient(params), p["bucket"], me,
                                     p["heartbeat_interval"])
        held = dict(held, heartbeat_pid=pid, heartbeat_pid_start=leases.process_start(pid) or -1)
        try:
            _cur, rev = journal.get(leases.KEY)
            journal.put(leases.KEY, held, expect_revision=rev)
        except Conflict:  # the heartbeat renewed it meanwhile; its pid is recorded on the next enter
            pass
    return dict(result, lease=held, lease_verdict=verdict,
                msg="%s: %s" % (verdict.replace("_", " "), reason))
