# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Merging a task's settings into a live config, and comparing configs. The one place for both.

The server replaces the whole config on update and fills defaults itself (max_* -> -1,
duplicate_window, reserved ``_nats.*`` metadata, omitted false booleans). So a desired config
is always the live config with the task's explicit settings merged in, and two configs are
compared in a canonical form in which server defaults, ordering of set-like lists and
reserved metadata do not count.
"""

from __future__ import annotations

import copy

RESERVED_METADATA_PREFIX = "_nats."
_EMPTY = (None, "", [], {}, False)


def prune_none(value):
    """Drop keys whose value is None (options the task left out), recursively."""
    if isinstance(value, dict):
        return {k: prune_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune_none(v) for v in value]
    return value


def deep_merge(live, changes):
    """``live`` with ``changes`` applied: nested dicts merge, everything else is replaced."""
    merged = copy.deepcopy(live) if live else {}
    for key, value in (changes or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "metadata":
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def user_metadata(metadata):
    """Metadata without the server's reserved ``_nats.*`` keys."""
    return {k: v for k, v in (metadata or {}).items() if not k.startswith(RESERVED_METADATA_PREFIX)}


def own_subjects(cfg):
    """The subjects a stream config lists itself. A stream left with none (and no sources or mirror) is given
    its own name by the server; that stand-in is not a subject of its own."""
    cfg = cfg or {}
    subjects = list(cfg.get("subjects") or [])
    if subjects == [cfg.get("name")] and not cfg.get("sources") and not cfg.get("mirror"):
        return []
    return subjects


def merge_metadata(live, desired):
    """Desired metadata plus the live reserved keys, so an update never drops what the server set."""
    reserved = {k: v for k, v in (live or {}).items() if k.startswith(RESERVED_METADATA_PREFIX)}
    return dict(desired or {}, **reserved)


def _canonical_value(value, sort_lists):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _canonical_value(item, sort_lists)
            if item not in _EMPTY:
                out[key] = item
        return out
    if isinstance(value, list):
        items = [_canonical_value(v, sort_lists) for v in value]
        if sort_lists:
            items = sorted(items, key=repr)
        return items
    return value


def canonical(config, defaults=None, unordered=(), ignore=()):
    """Compare-ready form of a stream or consumer config.

    ``defaults``: field -> value the server fills when the field is unset; such values vanish.
    ``unordered``: list fields whose order carries no meaning (subjects, filter_subjects).
    ``ignore``: fields that are not configuration (e.g. ``created``).
    """
    defaults = defaults or {}
    out = {}
    for key, value in (config or {}).items():
        if key in ignore:
            continue
        if key == "metadata":
            value = user_metadata(value)
        value = _canonical_value(value, key in unordered)
        if value in _EMPTY or (key in defaults and value == defaults[key]):
            continue
        out[key] = value
    return out


def changed_fields(before, after):
    """Sorted top-level fields whose canonical values differ."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
