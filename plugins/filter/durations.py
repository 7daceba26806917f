# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Jinja filters over module_utils/durations.py, so playbooks compare durations the way modules do."""

from __future__ import annotations

import time

from ansible.errors import AnsibleFilterError

from ansible_collections.athlete_ally.nats.plugins.module_utils.durations import age_check, humanize, to_nanos


def _to_nanos(value):
    try:
        return to_nanos(value)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def _age_check(when, max_age, now=None):
    try:
        return age_check(when, max_age, time.time() if now is None else float(now))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"to_nanos": _to_nanos, "humanize_nanos": humanize, "age_check": _age_check}
