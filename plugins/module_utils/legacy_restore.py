# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""A stream's restore point: its configuration and its consumers', kept in other streams' metadata, so a
rollback can recreate a stream after it was deleted (phase 3 deletes the legacy stream).

The record is one metadata value (JSON; metadata maps strings to strings) on each journal stream that exists,
written before the delete and compared first, so a run killed between the record and the delete re-runs with
``changed=false`` for the record and then deletes. Restoring creates the stream (continuing its sequence with
``first_seq``, and with only the subjects no other stream owns now: the group rollbacks move theirs back) and
the consumers it lacks. Nothing here depends on which stream or consumers they are.
"""

from __future__ import annotations

import json

from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import ApiError, JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import (
    recheck_consumer_config, recheck_stream_config)
from ansible_collections.athlete_ally.nats.plugins.module_utils.config_diff import own_subjects, user_metadata
from ansible_collections.athlete_ally.nats.plugins.module_utils.journal import PREFIX
from ansible_collections.athlete_ally.nats.plugins.module_utils.stream import find_overlaps

# The journal key of the record (docs/JOURNAL.md), on each journal stream.
RESTORE_POINT_KEY = PREFIX + "legacy_restore_point"
# The server caps a stream's metadata at 128 KiB, keys and values summed (JSMaxMetadataLen); the record may take a
# quarter of it, leaving the rest to the journal and anyone else's metadata on the same stream.
MAX_RECORD_BYTES = 32 * 1024
SERVER_METADATA_LIMIT = 128 * 1024
# StreamConfig.FirstSeq (nats-server 2.10): a recreated stream continues the sequence its consumers knew.
FIRST_SEQ_MIN_VERSION = (2, 10, 0)
NAMED_CONSUMER_API_MIN_VERSION = (2, 9, 0)
# Live values the server reports in a config but a create must not carry.
STREAM_LIVE_FIELDS = ("first_seq",)


def _clean(cfg, drop=()):
    out = {k: v for k, v in (cfg or {}).items() if k not in drop}
    meta = user_metadata(out.get("metadata"))
    if meta:
        out["metadata"] = meta
    else:
        out.pop("metadata", None)
    return out


def snapshot(info, consumer_infos):
    """The record of a stream from its STREAM.INFO and its consumers' CONSUMER.INFO replies: the configs a create
    needs (without the server's reserved ``_nats.*`` metadata) and the last seq, to continue the sequence."""
    consumers = sorted((_clean(c.get("config")) for c in consumer_infos or []),
                       key=lambda c: c.get("durable_name") or c.get("name") or "")
    return dict(config=_clean(info["config"], STREAM_LIVE_FIELDS),
                last_seq=int(((info.get("state") or {}).get("last_seq")) or 0),
                consumers=consumers)


def encode(record, where):
    """The record as the metadata value (compact, sorted: the same record always encodes the same)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_RECORD_BYTES:
        raise JetStreamError("the configuration of stream %s and its %d consumers takes %d bytes as JSON, more than "
                             "the %d this collection gives it in %s (the server allows %d for all of a stream's "
                             "metadata); nothing was recorded or deleted: save it by hand (nats stream info --json, "
                             "nats consumer info --json) before deleting the stream"
                             % (record["config"].get("name"), len(record["consumers"]), len(text),
                                MAX_RECORD_BYTES, where, SERVER_METADATA_LIMIT))
    return text


def decode(text, where):
    try:
        record = json.loads(text)
        if not isinstance(record.get("config"), dict) or not isinstance(record.get("consumers"), list):
            raise ValueError("config or consumers missing")
    except (ValueError, TypeError, AttributeError) as exc:
        raise JetStreamError("the restore point in %s is not a stream record (%s); recreate the stream by hand "
                             "and run again" % (where, exc))
    return record


def create_config(record, free_subjects, version):
    """The STREAM.CREATE body: the recorded config with only ``free_subjects`` (no subject at all makes the server
    listen on the stream's own name) and, where the server supports it, the sequence continued."""
    cfg = dict(record["config"], subjects=list(free_subjects))
    if version >= FIRST_SEQ_MIN_VERSION and record.get("last_seq"):
        cfg["first_seq"] = int(record["last_seq"]) + 1
    return cfg


def consumer_request(stream, cfg, version):
    """(api, body) creating one recorded consumer."""
    name = cfg.get("durable_name") or cfg.get("name")
    api = ("CONSUMER.CREATE.%s.%s" if version >= NAMED_CONSUMER_API_MIN_VERSION
           else "CONSUMER.DURABLE.CREATE.%s.%s") % (stream, name)
    return name, api, {"stream_name": stream, "config": cfg, "action": "create"}


def _metadata_value(info, key):
    return (((info or {}).get("config") or {}).get("metadata") or {}).get(key)


# -- actions ----------------------------------------------------------------------------------
def record(js, stream, journal_streams, key, check_mode=False):
    """Write the restore point of ``stream`` into every existing journal stream whose record differs."""
    info = js.stream_info(stream)
    if info is None:
        return dict(changed=False, recorded=[], msg="stream %s does not exist; nothing to record (a restore point "
                                                    "written before its delete stays where it is)" % stream)
    snap = snapshot(info, js.consumers(stream))
    existing = [(name, js.stream_info(name)) for name in journal_streams]
    existing = [(name, jinfo) for name, jinfo in existing if jinfo is not None]
    if not existing:
        raise JetStreamError("none of the journal streams %s exists, so the configuration of %s has nowhere to be "
                             "kept; nothing was recorded or deleted: a stream is deleted only once it can be "
                             "recreated" % (", ".join(journal_streams), stream))
    text = encode(snap, ", ".join(name for name, _info in existing))
    written = []
    for name, jinfo in existing:
        if _metadata_value(jinfo, key) == text:
            continue
        written.append(name)
        if not check_mode:
            cfg = jinfo["config"]
            meta = dict(cfg.get("metadata") or {}, **{key: text})
            js.request("STREAM.UPDATE.%s" % name, dict(cfg, metadata=meta),
                       recheck=recheck_stream_config(name, {"metadata": {key: text}}))
    return dict(changed=bool(written), recorded=written, record=snap,
                msg="restore point of %s (%d consumers, last_seq %d) %s" % (
                    stream, len(snap["consumers"]), snap["last_seq"],
                    ("written to " + ", ".join(written)) if written else "already in " +
                    ", ".join(name for name, _info in existing)))


def find_record(js, journal_streams, key):
    """(stream holding it, record) from the first journal stream holding the key, or (None, None)."""
    for name in journal_streams:
        text = _metadata_value(js.stream_info(name), key)
        if text:
            return name, decode(text, "%s metadata %s" % (name, key))
    return None, None


def restore(js, stream, journal_streams, key, check_mode=False):
    """Recreate ``stream`` from its restore point when it does not exist, and the recorded consumers it lacks."""
    info = js.stream_info(stream)
    where, rec = find_record(js, journal_streams, key)
    version = js.version_tuple()
    out = dict(changed=False, created_stream=False, created_consumers=[], subjects_left_out={})
    if info is None:
        if rec is None:
            raise JetStreamError("stream %s does not exist and none of %s holds its restore point (metadata %s, "
                                 "written before the stream was deleted); recreate %s and its consumers by hand, "
                                 "then run again" % (stream, ", ".join(journal_streams), key, stream))
        own = own_subjects(rec["config"])
        # Another stream owning a subject (or one overlapping it) would make the create fail (err_code 10065):
        # those stay where they are; the group rollbacks move theirs back.
        clashes = find_overlaps(js, stream, own)
        taken = {mine: "%s (%s)" % (other, theirs) for other, pairs in clashes.items() for mine, theirs in pairs}
        cfg = create_config(rec, [s for s in own if s not in taken], version)
        out.update(changed=True, created_stream=True, subjects=cfg["subjects"], subjects_left_out=taken,
                   restored_from=where)
        if not check_mode:
            try:
                # Only a missing stream is created: after a timed-out create, its existence says it was applied.
                js.request("STREAM.CREATE.%s" % stream, cfg, recheck=recheck_stream_config(stream, {}))
            except ApiError as exc:
                raise JetStreamError("stream %s: recreating it from the restore point in %s failed: %s (err_code %s);"
                                     " nothing else was changed" % (stream, where, exc.description, exc.err_code))
    if rec is None:
        out["msg"] = "stream %s exists; no restore point in %s, nothing to do" % (stream, ", ".join(journal_streams))
        return out
    for cfg in rec["consumers"]:
        name, api, body = consumer_request(stream, cfg, version)
        if not out["created_stream"] and js.consumer_info(stream, name) is not None:
            continue
        out["created_consumers"].append(name)
        out["changed"] = True
        if not check_mode:
            try:
                js.request(api, body, recheck=recheck_consumer_config(stream, name, {}))
            except ApiError as exc:
                raise JetStreamError("stream %s: recreating consumer %s from the restore point in %s failed: %s "
                                     "(err_code %s); run again to create the rest" % (
                                         stream, name, where, exc.description, exc.err_code))
    out["msg"] = ("stream %s %s from the restore point in %s (subjects %s%s); consumers created: %s" % (
        stream, "recreated" if out["created_stream"] else "exists", where,
        out.get("subjects", "unchanged"),
        "; left to their owners: %s" % out["subjects_left_out"] if out["subjects_left_out"] else "",
        ", ".join(out["created_consumers"]) or "none (all exist)"))
    return out


def run(module, js):
    """jetstream_restore_point: record or restore, as ``state`` says."""
    p = module.params
    do = record if p["state"] == "recorded" else restore
    return do(js, p["stream"], p["journal_streams"], p["key"] or RESTORE_POINT_KEY, check_mode=module.check_mode)
