# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The migration's control records (passed preflights, skips, the run lease) in a JetStream key-value bucket.

They are part of the journal (docs/JOURNAL.md) but cannot live in the streams' metadata with the move records:
a stream's config is replaced as a whole on every update, so a lease heartbeat writing there every few seconds
could write back a subject list a cut-over had just changed. A KV bucket gives each record its own subject and
compare-and-set on its last revision (``Nats-Expected-Last-Subject-Sequence``), which is what a lease needs.

The bucket is an ordinary NATS KV bucket (``nats kv get <bucket> lease`` reads it), spoken as raw JSON on
``$JS.API.*`` like every other call of the collection. It is created on the first write, never on a read.
"""

from __future__ import annotations

import base64
import json

from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import STREAM_NOT_FOUND, ApiError, JetStreamError

NO_MESSAGE = 10037  # JSNoMessageFoundErr, 404
WRONG_LAST_SEQUENCE = 10071  # JSStreamWrongLastSequenceErrF, 400: compare-and-set lost
HISTORY = 16  # revisions kept per key: the last passed preflights and skips stay readable


class Conflict(JetStreamError):
    """Someone else wrote the key since we read it."""


def stream_of(bucket):
    return "KV_%s" % bucket


def subject_of(bucket, key):
    return "$KV.%s.%s" % (bucket, key)


def bucket_config(bucket, replicas):
    """What ``nats kv add <bucket> --history 16 --replicas N`` creates."""
    return {
        "name": stream_of(bucket), "subjects": [subject_of(bucket, ">")], "retention": "limits",
        "max_msgs_per_subject": HISTORY, "max_msgs": -1, "max_bytes": -1, "max_age": 0, "max_msg_size": -1,
        "storage": "file", "discard": "new", "num_replicas": int(replicas), "duplicate_window": 120 * 10 ** 9,
        "allow_rollup_hdrs": True, "deny_delete": True, "deny_purge": False, "allow_direct": True,
    }


class ControlJournal(object):
    def __init__(self, js, bucket, replicas=1):
        self.js = js
        self.bucket = bucket
        self.replicas = replicas

    def exists(self):
        return self.js.stream_info(stream_of(self.bucket)) is not None

    def ensure(self):
        """Create the bucket when missing; True when it was created."""
        if self.exists():
            return False
        try:
            self.js.request("STREAM.CREATE.%s" % stream_of(self.bucket), bucket_config(self.bucket, self.replicas))
        except ApiError as exc:
            if not self.exists():  # created meanwhile by a concurrent run: fine
                raise JetStreamError("cannot create the migration's control bucket %s: %s" % (self.bucket, exc))
            return False
        return True

    def get(self, key):
        """``(value, revision)``; ``(None, 0)`` when the key or the bucket does not exist, ``(None, rev)`` when
        the key's last revision is a delete."""
        try:
            reply = self.js.request("STREAM.MSG.GET.%s" % stream_of(self.bucket),
                                    {"last_by_subj": subject_of(self.bucket, key)})
        except ApiError as exc:
            if exc.err_code in (NO_MESSAGE, STREAM_NOT_FOUND):  # no such key / no bucket yet
                return None, 0
            raise
        msg = reply.get("message") or {}
        rev = int(msg.get("seq") or 0)
        headers = base64.b64decode(msg.get("hdrs") or b"").decode("utf-8", "replace")
        if "KV-Operation: DEL" in headers or "KV-Operation: PURGE" in headers:
            return None, rev
        data = base64.b64decode(msg.get("data") or b"")
        try:
            return json.loads(data.decode("utf-8")), rev
        except ValueError:
            raise JetStreamError("control bucket %s: key %s holds %r, not a JSON record; delete it with "
                                 "'nats kv del %s %s'" % (self.bucket, key, data[:80], self.bucket, key))

    def put(self, key, value, expect_revision=None, delete=False):
        """Write ``value`` (a dict); with ``expect_revision`` only if the key is still at that revision (0: absent).
        Returns the new revision; raises Conflict when someone else wrote first."""
        headers = {}
        if expect_revision is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(int(expect_revision))
        if delete:
            headers["KV-Operation"] = "DEL"
        body = b"" if delete else json.dumps(value, sort_keys=True).encode()
        msg = self.js.raw_request(subject_of(self.bucket, key), body, headers=headers or None)
        try:
            ack = json.loads(msg.data or b"{}")
        except ValueError:
            ack = {}
        err = ack.get("error") or {}
        if err.get("err_code") == WRONG_LAST_SEQUENCE:
            raise Conflict("control bucket %s: %s was written by someone else meanwhile" % (self.bucket, key))
        if err or "seq" not in ack:
            raise JetStreamError("control bucket %s: writing %s failed: %s"
                                 % (self.bucket, key, err.get("description") or msg.data[:80]))
        return int(ack["seq"])
