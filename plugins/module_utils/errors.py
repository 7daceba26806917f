# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The collection's failures: one operator-facing line each, and the JetStream API err_codes they carry.

runner.run_module turns a JetStreamError into the task's one-line failure; anything else is a bug of ours.
"""

from __future__ import annotations

# JetStream API err_codes, as listed in nats-server's server/errors.json (constant names in comments).
# Every module imports them from here.
CLUSTER_INCOMPLETE = 10004  # JSClusterIncompleteErr, 503 "incomplete results"
CLUSTER_NO_PEERS = 10005  # JSClusterNoPeersErrF, 400 "no suitable peers for placement" (a node is down)
CLUSTER_NOT_ASSIGNED = 10007  # JSClusterNotAssignedErr, 500 "JetStream cluster not assigned to this server"
CLUSTER_NOT_AVAILABLE = 10008  # JSClusterNotAvailErr, 503 "JetStream system temporarily unavailable"
CLUSTER_NOT_LEADER = 10009  # JSClusterNotLeaderErr, 500 "JetStream cluster can not handle request"
CONSUMER_NOT_FOUND = 10014  # JSConsumerNotFoundErr, 404
STREAM_NAME_IN_USE = 10058  # JSStreamNameExistErr, 400 "stream name already in use with a different configuration"
STREAM_NOT_FOUND = 10059  # JSStreamNotFoundErr, 404
STREAM_SUBJECT_OVERLAP = 10065  # JSStreamSubjectOverlapErr, 400 "subjects overlap with an existing stream"
CONSUMER_ALREADY_EXISTS = 10148  # JSConsumerAlreadyExists, 400 (action create on an existing consumer)
CONSUMER_DOES_NOT_EXIST = 10149  # JSConsumerDoesNotExist, 400 (action update on a missing consumer)
TOO_MANY_REQUESTS = 10167  # JSStreamTooManyRequests, 429 "too many requests"


class JetStreamError(Exception):
    """A one-line, operator-facing failure (what, where, what to do).

    ``result`` carries partial results (last seen state, counts) back into the failed task.
    """

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


class ApiError(JetStreamError):
    """The server answered a JetStream API request with an error object."""

    def __init__(self, api, error):
        self.api = api
        self.code = error.get("code")
        self.err_code = error.get("err_code")
        self.description = error.get("description", "")
        super().__init__("JetStream API %s failed: %s (code %s, err_code %s)"
                         % (api, self.description, self.code, self.err_code))
        self.kind = "api_error"
        self.short = "%s (err_code %s)" % (self.description, self.err_code)


class TransportError(JetStreamError):
    """A request that got no answer. ``kind``: timeout, no_responders, connection_lost or disconnected."""

    def __init__(self, msg, kind, short):
        super().__init__(msg)
        self.kind = kind
        self.short = short


class RetryBudgetExhausted(JetStreamError):
    """Transient failures (no leader, connection lost) lasted longer than ``retry_budget``."""
