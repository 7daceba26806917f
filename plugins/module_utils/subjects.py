# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""NATS subjects and names as the server reads them, for checking a plan before anything is written.

Tokens are separated by ``.``; ``*`` matches exactly one token and ``>`` (last token only) one or more. Only a
whole token is a wildcard: ``vendor.o*`` is a literal subject. Pure functions, no I/O.
"""

from __future__ import annotations

import re

# Stream and consumer names become subject tokens and file names on the server.
_BAD_NAME = re.compile(r"[.*>\\/\s]")
_WHITESPACE = re.compile(r"\s")


def name_problem(name):
    """Why ``name`` cannot be a stream or durable consumer name, or None."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if _BAD_NAME.search(name):
        return "must not contain '.', '*', '>', '/', '\\' or whitespace"
    return None


def subject_problem(subject):
    """Why ``subject`` is not a valid subject (wildcards allowed), or None."""
    if not isinstance(subject, str) or not subject:
        return "must be a non-empty string"
    if _WHITESPACE.search(subject):
        return "must not contain whitespace"
    tokens = subject.split(".")
    if "" in tokens:
        return "has an empty token (a leading, trailing or doubled '.')"
    if ">" in tokens[:-1]:
        return "may have '>' only as its last token"
    return None


def is_literal(subject):
    """True when ``subject`` names one subject (no ``*`` or ``>`` token): something one can publish to."""
    return not any(t in ("*", ">") for t in subject.split("."))


def overlap(a, b):
    """True when some subject matches both patterns."""
    ta, tb = a.split("."), b.split(".")
    for x, y in zip(ta, tb):
        if x == ">" or y == ">":
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(ta) == len(tb)


def subset(a, b):
    """True when every subject ``a`` matches is matched by ``b`` (``a`` inside ``b``)."""
    ta, tb = a.split("."), b.split(".")
    for i, y in enumerate(tb):
        if i >= len(ta):
            return False
        x = ta[i]
        if y == ">":
            return True  # b takes this token and any after it; a has at least this one
        if x == ">":
            return False  # a reaches further than b's single token
        if y != "*" and x != y:
            return False  # b needs this literal; a is another literal or any token
    return len(ta) == len(tb)


def covered(subject, patterns):
    """True when ``subject`` lies inside one of ``patterns``."""
    return any(subset(subject, p) for p in patterns)
