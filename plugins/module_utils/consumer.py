# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Durable JetStream consumers: desired config from the live one, immutability checks, create/update/pause.

Rules (same as the stream module):
- desired = config_diff.deep_merge(live config, the task's explicit settings): omitted options keep live values;
- writes are raw JSON on CONSUMER.CREATE.<stream>.<name> with ``action: create`` for a new consumer and
  ``action: update`` for an existing one, so a consumer created or deleted behind our back fails the write
  instead of being silently replaced;
- fields the server refuses to change on update (consumer.go checkNewConsumerConfig) are refused here,
  before anything is written, naming the field, the live and the asked value;
- pausing (2.11+) goes through CONSUMER.PAUSE: the server ignores ``pause_until`` in an update request.
"""

from __future__ import annotations

import datetime
import re
import time

from ansible_collections.athlete_ally.nats.plugins.module_utils import config_diff, durations
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import (
    CONSUMER_ALREADY_EXISTS, CONSUMER_DOES_NOT_EXIST, CONSUMER_NOT_FOUND, STREAM_NOT_FOUND, ApiError, JetStreamError)
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import (
    recheck_consumer_config, recheck_consumer_deleted)

PAUSE_MIN_VERSION = (2, 11, 0)
NAMED_API_MIN_VERSION = (2, 9, 0)

# module option -> server config key, and how the value is converted
DURATION_FIELDS = ("ack_wait", "max_expires", "inactive_threshold", "idle_heartbeat")
OPTION_TO_FIELD = {
    "description": "description",
    "filter_subject": "filter_subject",
    "filter_subjects": "filter_subjects",
    "ack_policy": "ack_policy",
    "ack_wait": "ack_wait",
    "max_deliver": "max_deliver",
    "backoff": "backoff",
    "deliver_policy": "deliver_policy",
    "opt_start_seq": "opt_start_seq",
    "opt_start_time": "opt_start_time",
    "replay_policy": "replay_policy",
    "max_ack_pending": "max_ack_pending",
    "max_waiting": "max_waiting",
    "max_batch": "max_batch",
    "max_expires": "max_expires",
    "max_bytes": "max_bytes",
    "inactive_threshold": "inactive_threshold",
    "headers_only": "headers_only",
    "replicas": "num_replicas",
    "mem_storage": "mem_storage",
    "metadata": "metadata",
    "deliver_subject": "deliver_subject",
    "deliver_group": "deliver_group",
    "flow_control": "flow_control",
    "idle_heartbeat": "idle_heartbeat",
    "rate_limit": "rate_limit_bps",
    "sample_freq": "sample_freq",
}

# Values the server fills in when a field is unset (consumer.go setConsumerConfigDefaults); they do not count
# as differences.
SERVER_DEFAULTS = {
    "deliver_policy": "all",
    "replay_policy": "instant",
    "max_deliver": -1,
}
UNORDERED = ("filter_subjects",)
# pause_until is not configuration here: it is compared and applied on its own (CONSUMER.PAUSE).
# name mirrors durable_name (which is compared); servers before 2.9 do not report it.
IGNORE = ("pause_until", "name")
TIME_FIELDS = ("opt_start_time", "pause_until")

# What checkNewConsumerConfig refuses on update (nats-server 2.10 .. 2.15), in its order.
IMMUTABLE = ("deliver_policy", "mem_storage", "direct", "sourcing", "opt_start_seq", "opt_start_time",
             "ack_policy", "replay_policy", "idle_heartbeat", "flow_control", "max_waiting", "durable_name")
_ZERO_TIME = "0001-01-01T00:00:00Z"
_TS = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})$")


def _option_name(field):
    for option, key in OPTION_TO_FIELD.items():
        if key == field:
            return option
    return field


def normalize_time(value, field="time"):
    """RFC 3339 timestamp (any offset, up to ns) -> UTC ``YYYY-MM-DDTHH:MM:SS[.fffffffff]Z``; zero time -> None."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    match = _TS.match(text)
    if not match:
        raise JetStreamError("%s: cannot read %r as an RFC 3339 timestamp; use e.g. '2026-12-01T10:00:00Z'"
                             % (field, value))
    date, clock, frac, tz = match.groups()
    if tz in ("Z", "z"):
        tz = "+00:00"
    elif ":" not in tz:
        tz = tz[:3] + ":" + tz[3:]
    if date == "0001-01-01" and clock == "00:00:00" and not int(frac or "0"):
        return None
    stamp = datetime.datetime.fromisoformat("%sT%s%s" % (date, clock, tz)).astimezone(datetime.timezone.utc)
    nanos = int((frac or "").ljust(9, "0"))
    out = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        out += (".%09d" % nanos).rstrip("0")
    return out + "Z"


def task_changes(params):
    """The task's explicit consumer settings as server config fields (None = left out = keep live)."""
    changes = {}
    for option, field in OPTION_TO_FIELD.items():
        value = params.get(option)
        if value is None:
            continue
        if option in DURATION_FIELDS:
            value = durations.option_nanos(value, option)
        elif option == "backoff":
            value = [durations.option_nanos(v, "backoff") for v in value]
        elif option == "opt_start_time":
            value = normalize_time(value, option)
        elif option == "metadata":
            value = {str(k): str(v) for k, v in value.items()}
        changes[field] = value
    if changes.get("filter_subject") and changes.get("filter_subjects"):
        raise JetStreamError("set filter_subject or filter_subjects, not both (the server refuses both at once)")
    backoff = changes.get("backoff")
    if backoff:
        if "ack_wait" not in changes:
            # the server overwrites ack_wait with the first backoff step; asking for it keeps runs idempotent
            changes["ack_wait"] = backoff[0]
        elif changes["ack_wait"] != backoff[0]:
            raise JetStreamError("ack_wait (%s) must equal the first backoff step (%s): the server replaces "
                                 "ack_wait with it; leave ack_wait out or make them equal"
                                 % (durations.humanize(changes["ack_wait"]), durations.humanize(backoff[0])))
    return changes


def pause_request(params):
    """None (pausing not managed), ``("pause", ts)`` or ``("resume", None)``."""
    paused, until = params.get("paused"), params.get("pause_until")
    if paused is False and until:
        raise JetStreamError("paused=false and pause_until contradict each other; drop pause_until to resume")
    if until:
        return ("pause", normalize_time(until, "pause_until"))
    if paused is True:
        raise JetStreamError("paused=true needs pause_until (the server pauses until a deadline)")
    if paused is False:
        return ("resume", None)
    return None


def _compare_form(config):
    cfg = dict(config or {})
    for field in TIME_FIELDS:
        if cfg.get(field):
            cfg[field] = normalize_time(cfg[field], field)
    # A single filter may be given either way; the server keeps what it was sent.
    if not cfg.get("filter_subject") and len(cfg.get("filter_subjects") or []) == 1:
        cfg["filter_subject"] = cfg.pop("filter_subjects")[0]
    return config_diff.canonical(cfg, SERVER_DEFAULTS, UNORDERED, IGNORE)


def _display(canon):
    """Compare form with durations humanized, for diffs and messages."""
    out = {}
    for key, value in canon.items():
        if key in DURATION_FIELDS and isinstance(value, int):
            value = durations.humanize(value)
        elif key == "backoff":
            value = [durations.humanize(v) for v in value]
        out[key] = value
    return out


def _show(field, value):
    if value is None:
        return "unset"
    if field in DURATION_FIELDS and isinstance(value, int):
        return durations.humanize(value)
    return repr(value)


def desired_config(live, changes, name):
    """``live`` with the task's changes merged in (or the new config when ``live`` is None)."""
    desired = config_diff.deep_merge(live, changes)
    if live and "metadata" in changes:
        desired["metadata"] = config_diff.merge_metadata(live.get("metadata"), changes["metadata"])
    if changes.get("filter_subjects"):
        desired.pop("filter_subject", None)
    if changes.get("filter_subject"):
        desired.pop("filter_subjects", None)
    desired["durable_name"] = name
    if live is None or "name" in live:
        desired["name"] = name
    if live is None:
        desired.setdefault("ack_policy", "explicit")
    return desired


def immutable_violations(live_c, desired_c):
    """Refusals for fields the server cannot change; values shown as the server has them (defaults filled)."""
    def shown(canon, field):
        return _show(field, canon.get(field, SERVER_DEFAULTS.get(field)))

    problems = []
    for field in IMMUTABLE:
        if live_c.get(field) != desired_c.get(field):
            problems.append("%s is %s, asked %s" % (_option_name(field), shown(live_c, field),
                                                    shown(desired_c, field)))
    live_push, want_push = bool(live_c.get("deliver_subject")), bool(desired_c.get("deliver_subject"))
    if live_push != want_push:
        problems.append("deliver_subject is %s, asked %s (%s)"
                        % (_show("deliver_subject", live_c.get("deliver_subject")),
                           _show("deliver_subject", desired_c.get("deliver_subject")),
                           "push to pull" if live_push else "pull to push"))
    return problems


def state_of(info):
    if not info:
        return {}
    keys = ("num_pending", "num_ack_pending", "num_redelivered", "num_waiting", "delivered", "ack_floor",
            "cluster")
    state = {k: info.get(k) for k in keys}
    state["paused"] = bool(info.get("paused", False))
    state["pause_remaining"] = info.get("pause_remaining")
    state["created"] = info.get("created")
    return state


def _pause_state(config, info):
    until = normalize_time((config or {}).get("pause_until"), "pause_until")
    return {"pause_until": until, "paused": bool((info or {}).get("paused", False))}


class ConsumerManager(object):
    def __init__(self, module, js):
        self.module = module
        self.js = js
        self.params = module.params
        self.stream = self.params["stream"]
        self.name = self.params["name"]
        self.label = "consumer %s on stream %s" % (self.name, self.stream)

    # -- server calls -----------------------------------------------------------------------
    def _check_pause_supported(self):
        version = self.js.version_tuple()
        if version < PAUSE_MIN_VERSION:
            raise JetStreamError("pause_until/paused need nats-server 2.11 or later; %s runs %s"
                                 % (self.js.where, ".".join(str(v) for v in version)))

    def _create_api(self):
        if self.js.version_tuple() < NAMED_API_MIN_VERSION:
            return "CONSUMER.DURABLE.CREATE.%s.%s" % (self.stream, self.name)
        return "CONSUMER.CREATE.%s.%s" % (self.stream, self.name)

    def _write(self, config, action):
        payload = {"stream_name": self.stream, "config": config, "action": action}
        try:
            return self.js.request(self._create_api(), payload,
                                   recheck=recheck_consumer_config(self.stream, self.name, config))
        except ApiError as exc:
            if exc.err_code == CONSUMER_ALREADY_EXISTS:
                raise JetStreamError("%s was created by someone else while this task ran (with another config); "
                                     "nothing was changed, re-run to converge" % self.label)
            if exc.err_code == CONSUMER_DOES_NOT_EXIST:
                raise JetStreamError("%s was deleted while this task ran; nothing was changed, re-run to "
                                     "recreate it" % self.label)
            if exc.err_code == STREAM_NOT_FOUND:
                raise JetStreamError("stream %s not found at %s" % (self.stream, self.js.where))
            raise JetStreamError("%s: the server refused to %s it: %s (err_code %s)"
                                 % (self.label, action, exc.description, exc.err_code))

    def _pause(self, until):
        body = {"pause_until": until} if until else {}
        try:
            return self.js.request("CONSUMER.PAUSE.%s.%s" % (self.stream, self.name), body)
        except ApiError as exc:
            raise JetStreamError("%s: the server refused to %s it: %s (err_code %s)"
                                 % (self.label, "pause" if until else "resume", exc.description, exc.err_code))

    def _info_after_pause(self, paused, wait=3.0):
        """Consumer info once it reflects the pause reply (the info may lag the meta layer briefly)."""
        deadline = time.monotonic() + wait
        while True:
            info = self._info()
            if bool(info.get("paused", False)) == paused or time.monotonic() >= deadline:
                info["paused"] = paused  # the PAUSE reply is authoritative
                return info
            time.sleep(0.1)

    def _info(self):
        info = self.js.consumer_info(self.stream, self.name)
        if info is None:
            raise JetStreamError("%s disappeared right after the write; check who deletes it" % self.label)
        return info

    # -- states -----------------------------------------------------------------------------
    def run(self):
        info = self.js.consumer_info(self.stream, self.name)
        if info is None and self.js.stream_info(self.stream) is None:
            if self.params["state"] == "absent":
                return dict(changed=False, stream=self.stream, name=self.name, operation="none", config={},
                            state={}, changed_fields=[],
                            msg="stream %s does not exist, so neither does the consumer" % self.stream)
            raise JetStreamError("stream %s not found at %s; create the stream before its consumer %s"
                                 % (self.stream, self.js.where, self.name))
        if self.params["state"] == "absent":
            return self.absent(info)
        changes = task_changes(self.params)
        pause = pause_request(self.params)
        if pause is not None:
            self._check_pause_supported()
        if info is None:
            return self.create(changes, pause)
        return self.update(info, changes, pause)

    def _result(self, changed, action, config, info, fields, before=None, after=None):
        result = dict(changed=changed, stream=self.stream, name=self.name, operation=action,
                      config=config or {}, state=state_of(info), changed_fields=fields)
        if self.module._diff and (before is not None or after is not None):
            result["diff"] = dict(before=before or {}, after=after or {},
                                  before_header="%s/%s (live)" % (self.stream, self.name),
                                  after_header="%s/%s (desired)" % (self.stream, self.name))
        return result

    def absent(self, info):
        if info is None:
            return self._result(False, "none", {}, None, [])
        before = _display(_compare_form(info["config"]))
        if not self.module.check_mode:
            try:
                self.js.request("CONSUMER.DELETE.%s.%s" % (self.stream, self.name),
                                recheck=recheck_consumer_deleted(self.stream, self.name))
            except ApiError as exc:
                if exc.err_code not in (CONSUMER_NOT_FOUND, STREAM_NOT_FOUND):
                    raise JetStreamError("%s: the server refused to delete it: %s (err_code %s)"
                                         % (self.label, exc.description, exc.err_code))
                return self._result(False, "none", {}, None, [])
        return self._result(True, "deleted", info["config"], info, ["state"], before, {})

    def create(self, changes, pause):
        desired = desired_config(None, changes, self.name)
        if pause and pause[0] == "pause":
            desired["pause_until"] = pause[1]
        want = _compare_form(desired)
        fields = sorted(set(want) | ({"pause_until"} if desired.get("pause_until") else set()))
        after = dict(_display(want), **({"pause_until": desired["pause_until"]} if desired.get("pause_until") else {}))
        if self.module.check_mode:
            return self._result(True, "created", desired, None, fields, {}, after)
        self._write(desired, "create")
        info = self._info()
        self._warn_adjusted(want, _compare_form(info["config"]))
        return self._result(True, "created", info["config"], info, fields, {}, after)

    def update(self, info, changes, pause):
        live = info["config"]
        desired = desired_config(live, changes, self.name)
        live_c, want_c = _compare_form(live), _compare_form(desired)
        problems = immutable_violations(live_c, want_c)
        if problems:
            raise JetStreamError("%s: cannot change on update: %s; nothing was written (delete and recreate the "
                                 "consumer to change these, or keep the live values)"
                                 % (self.label, "; ".join(problems)))
        fields = config_diff.changed_fields(live_c, want_c)
        live_p = _pause_state(live, info)
        pause_change = False
        want_p = dict(live_p)
        if pause and pause[0] == "pause" and live_p["pause_until"] != pause[1]:
            pause_change, want_p = True, {"pause_until": pause[1], "paused": True}
        elif pause and pause[0] == "resume" and live_p["paused"]:
            pause_change, want_p = True, {"pause_until": None, "paused": False}
        if pause_change:
            fields = sorted(set(fields) | {"pause_until"})
        if not fields:
            return self._result(False, "none", live, info, [])
        before = dict(_display(live_c), **live_p)
        after = dict(_display(want_c), **want_p)
        if self.module.check_mode:
            predicted = dict(desired)
            predicted.pop("pause_until", None)
            if want_p["pause_until"]:
                predicted["pause_until"] = want_p["pause_until"]
            return self._result(True, "updated", predicted, info, fields, before, after)
        if set(fields) - {"pause_until"}:
            self._write(desired, "update")
        info = None
        if pause_change:
            reply = self._pause(want_p["pause_until"])
            info = self._info_after_pause(bool(reply.get("paused")))
        info = info or self._info()
        self._warn_adjusted(want_c, _compare_form(info["config"]))
        return self._result(True, "updated", info["config"], info, fields, before, after)

    def _warn_adjusted(self, wanted, got):
        # Only what the task asked for: fields it left out are the server's to fill (max_waiting, ...).
        adjusted = [f for f in config_diff.changed_fields(wanted, got) if wanted.get(f) is not None]
        if adjusted:
            self.module.warn("%s: the server stored other values than asked for %s (asked %s, stored %s); set "
                             "them to the stored values or every run will report a change"
                             % (self.label, ", ".join(_option_name(f) for f in adjusted),
                                {f: wanted.get(f) for f in adjusted}, {f: got.get(f) for f in adjusted}))


def run(module, js):
    """``action`` for runner.run_module."""
    return ConsumerManager(module, js).run()
