# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Logic of the jetstream_stream module: option -> raw JSON, server defaults, what an update may
not change, subject overlap, and create/update/delete/purge.

Every config sent to the server is the live config (unknown fields included) with the task's
explicit settings merged in; configs are compared in config_diff's canonical form.
"""

from __future__ import annotations

import copy
import datetime
import re

from ansible_collections.athlete_ally.nats.plugins.module_utils import config_diff, durations
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import ApiError, JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import (
    recheck_stream_config, recheck_stream_deleted)

NS = 10 ** 9
DEFAULT_DUPLICATE_WINDOW = 120 * NS  # StreamDefaultDuplicatesWindow (2m)
MAX_REPLICAS = 5  # StreamMaxReplicas

# Values the server fills in when a field is unset: equal to these counts as "not set".
SERVER_DEFAULTS = {
    "retention": "limits",
    "storage": "file",
    "discard": "old",
    "compression": "none",
    "num_replicas": 1,
    "max_msgs": -1,
    "max_bytes": -1,
    "max_msgs_per_subject": -1,
    "max_msg_size": -1,
    "max_consumers": -1,
    "max_age": 0,
    "first_seq": 0,
}
UNORDERED = ("subjects", "sources", "placement")

# Task option -> raw JSON field, for plain (scalar) options.
SCALAR_OPTIONS = {
    "description": "description",
    "subjects": "subjects",
    "storage": "storage",
    "retention": "retention",
    "max_msgs": "max_msgs",
    "max_bytes": "max_bytes",
    "max_msg_size": "max_msg_size",
    "max_msgs_per_subject": "max_msgs_per_subject",
    "max_consumers": "max_consumers",
    "replicas": "num_replicas",
    "discard": "discard",
    "discard_new_per_subject": "discard_new_per_subject",
    "compression": "compression",
    "allow_direct": "allow_direct",
    "mirror_direct": "mirror_direct",
    "allow_rollup_hdrs": "allow_rollup_hdrs",
    "deny_delete": "deny_delete",
    "deny_purge": "deny_purge",
    "sealed": "sealed",
    "no_ack": "no_ack",
    "allow_msg_ttl": "allow_msg_ttl",
}
DURATION_OPTIONS = {"max_age": "max_age", "duplicate_window": "duplicate_window"}

# Minimum server version per setting (older servers silently drop the field).
MIN_VERSION = {"allow_msg_ttl": (2, 11, 0)}
# max_consumers became updatable in 2.12.5; allow_msg_ttl could not be changed at all in 2.11.
MAX_CONSUMERS_UPDATABLE = (2, 12, 5)
MSG_TTL_ENABLE_ON_UPDATE = (2, 12, 0)

_BAD_NAME = re.compile(r"[.*>\\/\s]")


# -- subjects ----------------------------------------------------------------------------------
def subjects_collide(a, b):
    """True when some subject matches both patterns (``*`` one token, ``>`` one or more)."""
    ta, tb = a.split("."), b.split(".")
    for i, (x, y) in enumerate(zip(ta, tb)):
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    return len(ta) == len(tb)


def overlapping(mine, theirs):
    """Pairs (my subject, their subject) that collide."""
    return [(m, t) for m in mine or [] for t in theirs or [] if subjects_collide(m, t)]


def effective_subjects(cfg):
    """Subjects the server will listen on: none given and no sources/mirror means the stream's name."""
    subjects = list(cfg.get("subjects") or [])
    if not subjects and not cfg.get("mirror") and not cfg.get("sources"):
        return [cfg.get("name")]
    return subjects


# -- option -> raw JSON ------------------------------------------------------------------------
def _transform(item, field):
    if item is None:
        return None
    return config_diff.prune_none({"src": item.get("src"), "dest": item.get("dest")})


def _source(item, field):
    if item is None:
        return None
    out = {
        "name": item.get("name"),
        "filter_subject": item.get("filter_subject"),
        "opt_start_seq": item.get("opt_start_seq"),
        "opt_start_time": item.get("opt_start_time"),
    }
    if item.get("subject_transforms") is not None:
        out["subject_transforms"] = [_transform(t, field) for t in item["subject_transforms"]]
    if item.get("external") is not None:
        out["external"] = config_diff.prune_none({"api": item["external"].get("api"),
                                                  "deliver": item["external"].get("deliver")})
    return config_diff.prune_none(out)


def task_settings(params):
    """The raw JSON fields the task sets explicitly (metadata is handled by ``desired_config``)."""
    name = params["name"]
    if not name or _BAD_NAME.search(name):
        raise JetStreamError("stream name %r is invalid: it must be non-empty and contain no '.', '*', '>', "
                             "'/', '\\' or whitespace" % name)
    out = {}
    for option, field in SCALAR_OPTIONS.items():
        if params.get(option) is not None:
            out[field] = params[option]
    for option, field in DURATION_OPTIONS.items():
        if params.get(option) is not None:
            out[field] = durations.option_nanos(params[option], option)
    replicas = params.get("replicas")
    if replicas is not None and not 1 <= replicas <= MAX_REPLICAS:
        raise JetStreamError("stream %s: replicas must be between 1 and %d, got %s" % (name, MAX_REPLICAS, replicas))
    for option in ("max_msgs", "max_bytes", "max_msg_size", "max_msgs_per_subject", "max_consumers"):
        if params.get(option) is not None and params[option] < -1:
            raise JetStreamError("stream %s: %s must be -1 (unlimited) or more, got %s"
                                 % (name, option, params[option]))
    if params.get("sources") is not None:
        out["sources"] = [_source(s, "sources") for s in params["sources"]]
    if params.get("mirror") is not None:
        out["mirror"] = _source(params["mirror"], "mirror")
    if params.get("subject_transform") is not None:
        out["subject_transform"] = _transform(params["subject_transform"], "subject_transform")
    if params.get("republish") is not None:
        rp = params["republish"]
        out["republish"] = config_diff.prune_none({"src": rp.get("src"), "dest": rp.get("dest"),
                                                   "headers_only": rp.get("headers_only")})
    if params.get("placement") is not None:
        pl = params["placement"]
        out["placement"] = config_diff.prune_none({"cluster": pl.get("cluster"), "tags": pl.get("tags")})
    if params.get("consumer_limits") is not None:
        cl = params["consumer_limits"]
        out["consumer_limits"] = config_diff.prune_none({
            "inactive_threshold": durations.option_nanos(cl.get("inactive_threshold"),
                                                         "consumer_limits.inactive_threshold"),
            "max_ack_pending": cl.get("max_ack_pending")})
    return out


def default_duplicate_window(cfg):
    """What the server stores when duplicate_window is unset: 2m, clamped to max_age."""
    max_age = cfg.get("max_age") or 0
    if max_age and max_age < DEFAULT_DUPLICATE_WINDOW:
        return max_age
    return DEFAULT_DUPLICATE_WINDOW


def desired_config(live, settings, params):
    """Live config + the task's settings; live reserved metadata and unknown fields kept."""
    live = live or {}
    desired = config_diff.deep_merge(live, settings)
    desired["name"] = params["name"]
    if params.get("metadata") is not None:
        asked = {str(k): "" if v is None else str(v) for k, v in params["metadata"].items()}
        user = config_diff.user_metadata(live.get("metadata"))
        user = dict(user, **asked) if params.get("metadata_merge") else asked
        desired["metadata"] = config_diff.merge_metadata(live.get("metadata"), user)
    # A duplicate window the server derived (never asked for) follows a max_age change.
    if live and "duplicate_window" not in settings and "max_age" in settings and \
            live.get("duplicate_window") == default_duplicate_window(live):
        desired.pop("duplicate_window", None)
    return desired


# -- comparison --------------------------------------------------------------------------------
def _utc(value):
    if not value or not isinstance(value, str):
        return value
    text = value.strip().replace("Z", "+00:00")
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # Go writes nanoseconds; Python reads microseconds
        text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    try:
        ts = datetime.datetime.fromisoformat(text)
    except ValueError:
        return value
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.timezone.utc)
    return ts.astimezone(datetime.timezone.utc).isoformat()


def _norm_source(src):
    if not src:
        return src
    src = dict(src)
    if src.get("opt_start_time"):
        src["opt_start_time"] = _utc(src["opt_start_time"])
    return src


def normalize(cfg):
    """Server-side normalizations applied to a config so desired and live compare equal."""
    cfg = copy.deepcopy(cfg or {})
    if not cfg:
        return cfg
    if not cfg.get("subjects") and not cfg.get("mirror") and not cfg.get("sources"):
        cfg["subjects"] = [cfg.get("name")]
    if cfg.get("republish"):
        cfg["republish"].setdefault("src", ">")
        if not cfg["republish"]["src"]:
            cfg["republish"]["src"] = ">"
    if cfg.get("sealed"):  # sealing forces these (configUpdateCheck)
        cfg.update(max_age=0, discard="new", deny_delete=True, deny_purge=True, allow_rollup_hdrs=False)
    if cfg.get("mirror"):
        cfg["mirror"] = _norm_source(cfg["mirror"])
    if cfg.get("sources"):
        cfg["sources"] = [_norm_source(s) for s in cfg["sources"]]
    if cfg.get("duplicate_window") == default_duplicate_window(cfg):
        cfg["duplicate_window"] = 0
    return cfg


def canonical(cfg):
    return config_diff.canonical(normalize(cfg), defaults=SERVER_DEFAULTS, unordered=UNORDERED)


def humanized(canon):
    """Canonical config with durations written as 14d/2m, for diffs and messages."""
    out = copy.deepcopy(canon)
    for key in ("max_age", "duplicate_window"):
        if isinstance(out.get(key), int):
            out[key] = durations.humanize(out[key])
    limits = out.get("consumer_limits") or {}
    if isinstance(limits.get("inactive_threshold"), int):
        limits["inactive_threshold"] = durations.humanize(limits["inactive_threshold"])
    return out


def _show(field, value):
    if field in ("max_age", "duplicate_window") and isinstance(value, int):
        return durations.humanize(value)
    return repr(value)


# -- pre-write checks ---------------------------------------------------------------------------
def check_version(name, settings, version):
    for field, minimum in MIN_VERSION.items():
        if settings.get(field) and version < minimum:
            raise JetStreamError("stream %s: %s needs nats-server %s or newer; this server is %s and would "
                                 "silently ignore it" % (name, field, ".".join(map(str, minimum)),
                                                         ".".join(map(str, version))))


def check_consistency(name, cfg):
    """Combinations checkStreamCfg refuses, named before anything is sent."""
    problems = []
    if cfg.get("discard_new_per_subject"):
        if cfg.get("discard") != "new":
            problems.append("discard_new_per_subject needs discard: new (it is %r)" % cfg.get("discard", "old"))
        if (cfg.get("max_msgs_per_subject") or -1) <= 0:
            problems.append("discard_new_per_subject needs max_msgs_per_subject > 0")
    if cfg.get("deny_purge") and cfg.get("allow_rollup_hdrs"):
        problems.append("allow_rollup_hdrs needs purges allowed (deny_purge is true)")
    if cfg.get("mirror") and (cfg.get("subjects") or cfg.get("sources")):
        problems.append("a mirror can have neither subjects nor sources")
    max_age, dupe = cfg.get("max_age") or 0, cfg.get("duplicate_window") or 0
    if max_age and dupe > max_age:
        problems.append("duplicate_window %s is larger than max_age %s"
                        % (durations.humanize(dupe), durations.humanize(max_age)))
    if max_age and max_age < NS // 10:
        problems.append("max_age must be 0 (unlimited) or at least 100ms")
    if problems:
        raise JetStreamError("stream %s: invalid configuration: %s" % (name, "; ".join(problems)))


def immutable_violations(live, desired, version):
    """Changes the server refuses on update, as 'field: live X, asked Y (why)' strings."""
    out = []

    def note(field, why):
        out.append("%s: live %s, asked %s (%s)" % (field, _show(field, live.get(field)),
                                                   _show(field, desired.get(field)), why))

    if live.get("storage", "file") != desired.get("storage", "file"):
        note("storage", "storage type is fixed at creation")
    if live.get("retention", "limits") != desired.get("retention", "limits") and \
            "workqueue" in (live.get("retention"), desired.get("retention")):
        note("retention", "retention can not change to or from workqueue")
    for flag in ("sealed", "deny_delete", "deny_purge", "allow_msg_ttl"):
        if live.get(flag) and not desired.get(flag):
            note(flag, "once true it can not be switched back")
    if not live.get("allow_msg_ttl") and desired.get("allow_msg_ttl") and version < MSG_TTL_ENABLE_ON_UPDATE:
        note("allow_msg_ttl", "nats-server before 2.12 fixes it at creation")
    if live.get("max_consumers", -1) != desired.get("max_consumers", -1) and version < MAX_CONSUMERS_UPDATABLE:
        note("max_consumers", "nats-server before 2.12.5 fixes it at creation")
    live_mirror = config_diff.canonical({"m": _norm_source(live.get("mirror"))}).get("m")
    asked_mirror = config_diff.canonical({"m": _norm_source(desired.get("mirror"))}).get("m")
    if live_mirror != asked_mirror:
        note("mirror", "a mirror's origin can not be updated")
    return out


def find_overlaps(js, name, subjects, ignore=()):
    """{other stream: [(mine, theirs)]} for every other stream whose subjects collide with ours.

    The server filters stream names by subject overlap (``STREAM.NAMES`` with ``subject``, wildcards
    included), so this costs one request per subject plus one ``STREAM.INFO`` per colliding stream,
    whatever the number of streams in the account. ``ignore`` names further streams to leave out.
    """
    candidates = set()
    for subject in subjects or []:
        candidates.update(js.stream_names(subject))
    found = {}
    for other in sorted(candidates - {name} - set(ignore)):
        info = js.stream_info(other)  # None: deleted since the names were listed
        cfg = (info or {}).get("config") or {}
        pairs = overlapping(subjects, cfg.get("subjects"))
        if pairs:
            found[other] = pairs
    return found


# -- results -----------------------------------------------------------------------------------
def state_of(info):
    st = (info or {}).get("state") or {}
    return {k: st.get(k) for k in ("messages", "bytes", "first_seq", "last_seq", "first_ts", "last_ts",
                                   "consumer_count")} if info else {}


def cluster_of(info):
    cl = (info or {}).get("cluster") or {}
    if not cl:
        return {}
    return {
        "name": cl.get("name"),
        "leader": cl.get("leader"),
        "replicas": [{"name": r.get("name"), "current": bool(r.get("current")), "lag": r.get("lag", 0),
                      "offline": bool(r.get("offline"))} for r in cl.get("replicas") or []],
    }


def _rephrase(exc, name, what):
    return JetStreamError("stream %s: the server refused to %s it: %s (err_code %s)"
                          % (name, what, exc.description, exc.err_code))


# -- purge -------------------------------------------------------------------------------------
def purge_request(params):
    body = {}
    if params.get("purge_subject"):
        body["filter"] = params["purge_subject"]
    if params.get("purge_keep") is not None:
        body["keep"] = params["purge_keep"]
    if params.get("purge_up_to_seq") is not None:
        body["seq"] = params["purge_up_to_seq"]
    return body


def estimate_purge(js, name, info, body):
    """How many messages a purge would remove (check mode); exact for whole/subject, else an upper bound."""
    st = (info or {}).get("state") or {}
    total = st.get("messages") or 0
    if not total:
        return 0
    if body.get("filter"):
        sub = js.request("STREAM.INFO.%s" % name, {"subjects_filter": body["filter"]})
        total = sum(((sub.get("state") or {}).get("subjects") or {}).values())
    if body.get("keep") is not None:
        return max(0, total - body["keep"])
    if body.get("seq") is not None:
        return total if body["seq"] > (st.get("first_seq") or 0) else 0
    return total


def do_purge(module, js, name, info):
    body = purge_request(module.params)
    if module.check_mode:
        return estimate_purge(js, name, info, body)
    try:
        reply = js.request("STREAM.PURGE.%s" % name, body or None)
    except ApiError as exc:
        raise _rephrase(exc, name, "purge")
    return reply.get("purged") or 0


# -- actions -----------------------------------------------------------------------------------
def stream_present(module, js):
    p = module.params
    name = p["name"]
    version = js.version_tuple()
    settings = task_settings(p)
    narrowing = [k for k in ("purge_subject", "purge_keep", "purge_up_to_seq") if p.get(k) is not None]
    if narrowing and not p.get("purge"):
        raise JetStreamError("stream %s: %s only narrow a purge; set purge: true as well"
                             % (name, ", ".join(narrowing)))
    check_version(name, settings, version)

    info = js.stream_info(name)
    live = (info or {}).get("config")
    desired = desired_config(live, settings, p)
    check_consistency(name, desired)

    if p.get("subjects") == [] and not desired.get("mirror") and not desired.get("sources"):
        module.warn("stream %s: 'subjects: []' on a stream without sources or mirror makes the server listen on "
                    "the stream's own name (%s); treated as subjects: [%s]" % (name, name, name))

    before = canonical(live) if live else {}
    after = canonical(desired)
    fields = config_diff.changed_fields(before, after)
    result = dict(changed=False, name=name, changed_fields=fields)

    if live is not None:
        problems = immutable_violations(live, desired, version)
        if problems:
            raise JetStreamError("stream %s: refusing to update, the server forbids: %s; nothing was changed "
                                 "(delete and recreate the stream to change these)" % (name, "; ".join(problems)),
                                 config=live, state=state_of(info))

    if fields and (live is None or "subjects" in fields):
        mine = effective_subjects(desired)
        clashes = find_overlaps(js, name, mine)
        if clashes:
            text = "; ".join("stream %s (%s)" % (other, ", ".join("%s overlaps %s" % pair for pair in pairs))
                             for other, pairs in sorted(clashes.items()))
            raise JetStreamError("stream %s: subjects overlap with %s; nothing was changed (remove them from the "
                                 "other stream first)" % (name, text),
                                 config=live or {}, state=state_of(info))

    if fields:
        result["changed"] = True
        if not module.check_mode:
            api, what = ("STREAM.UPDATE.%s", "update") if live is not None else ("STREAM.CREATE.%s", "create")
            # A timed-out write (leader election) may have been applied: re-read what it changes before resending.
            applied = {k: v for k, v in desired.items() if (live or {}).get(k) != v}
            try:
                info = js.request(api % name, desired, recheck=recheck_stream_config(name, applied))
            except ApiError as exc:
                raise _rephrase(exc, name, what)
        else:
            info = dict(info or {}, config=desired)

    if p.get("purge"):
        purged = do_purge(module, js, name, info) if (info and info.get("state")) else 0
        result["purged"] = purged
        if purged:
            result["changed"] = True
            if not module.check_mode:
                info = js.stream_info(name) or info

    if module._diff:
        result["diff"] = {"before": humanized(before), "after": humanized(after),
                          "before_header": "stream %s (live)" % name, "after_header": "stream %s (task)" % name}
    result.update(config=(info or {}).get("config") or {}, state=state_of(info), cluster=cluster_of(info))
    return result


def stream_absent(module, js):
    p = module.params
    name = p["name"]
    info = js.stream_info(name)
    result = dict(changed=False, name=name, changed_fields=[], config={}, state={}, cluster={})
    if info is None:
        if module._diff:
            result["diff"] = {"before": {}, "after": {}}
        return result
    messages = (info.get("state") or {}).get("messages") or 0
    partial = dict(config=info.get("config"), state=state_of(info), cluster=cluster_of(info))
    if messages:
        if p.get("only_if_empty"):
            raise JetStreamError("stream %s holds %d messages; not deleted because only_if_empty is set"
                                 % (name, messages), **partial)
        if not p.get("force"):
            raise JetStreamError("stream %s holds %d messages; set force: true to delete them with the stream, "
                                 "or only_if_empty: true to delete only empty streams" % (name, messages), **partial)
    if not module.check_mode:
        try:
            js.request("STREAM.DELETE.%s" % name, recheck=recheck_stream_deleted(name))
        except ApiError as exc:
            raise _rephrase(exc, name, "delete")
    before = canonical(info.get("config"))
    result.update(changed=True, changed_fields=sorted(before), state=state_of(info), deleted_messages=messages)
    if module._diff:
        result["diff"] = {"before": humanized(before), "after": {}}
    return result


def run(module, js):
    if module.params["state"] == "absent":
        return stream_absent(module, js)
    return stream_present(module, js)
