# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""The env file of a lab service: one format for what writes it (service_driver set_env through the lab_service
action, the lab's first start) and what reads it (the lab services at start, the driver's status and set_env).

The format, exactly:

* UTF-8 text. Lines end with ``\\n``; a ``\\r`` right before it is dropped (a file saved with CRLF reads the same),
  one anywhere else is a value character (which :func:`render` never writes). Nothing else ends a line: vertical
  tabs, form feeds, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029 are value characters (``str.splitlines``
  would split on them, so it is not used).
* A line that is empty or only whitespace is skipped. A line whose first non-whitespace character is ``#`` is a
  comment. A ``#`` anywhere else is part of the value.
* Every other line is ``KEY=VALUE``, split at the first ``=``: more ``=`` belong to the value (``URL=a?b=c``).
  Whitespace around the key is ignored; the key is then non-empty and holds no whitespace and no ``=``.
* The value is everything after that ``=``, verbatim: spaces (leading and trailing), quotes, ``#``, ``$`` and
  backslashes are value characters. There is no quoting, no escape and no expansion (as in ``docker --env-file``),
  so ``A="x"`` sets A to the three characters ``"x"``. ``KEY=`` sets KEY to the empty string, which is not the same as
  leaving KEY out.
* ``export`` is not a keyword: ``export A=1`` has a space in its key and is refused.
* A key given twice takes the value of its last line.
* A line that is not blank, a comment or ``KEY=VALUE`` is an error naming its line number, never skipped: the file
  is written by :func:`render`, so such a line is a hand edit that would otherwise vanish silently.

:func:`render` writes a header comment, then one ``KEY=VALUE`` line per variable sorted by key case-insensitively
(keys that differ only in case by code point, so the text does not depend on the dict's order), and refuses
(ValueError) what :func:`parse` could not read back: a key that is empty or holds whitespace or ``=``, a value
holding ``\\n``, ``\\r`` or NUL (no environment variable can hold NUL). So ``parse(render(env)) == env`` for every
env it accepts.

Plain Python without Ansible imports: the lab services load this file by path (lab/services/common.py).
"""

from __future__ import annotations

import json

HEADER = "Environment of %s (read at start; change it with service_driver set_env)"


def env_text(value):
    """The text a non-null env value is stored as: a string as is, anything else (true, 3, a list) as its JSON text
    ("true", "3"), like Jinja ``v if v is string else v | to_json``."""
    return value if isinstance(value, str) else json.dumps(value)


def key_error(key):
    """Why ``key`` cannot be a variable of an env file, or None."""
    if not key:
        return "an empty key"
    if "=" in key:
        return "a key with '='"
    if any(c.isspace() for c in key):
        return "a key with whitespace"
    if "\0" in key:
        return "a key with NUL"
    return None


def parse(text, source="env file"):
    """The variables of an env file's text as a dict (see the module's docstring); ValueError naming ``source`` and
    the line for a line that is not blank, a comment or KEY=VALUE."""
    env = {}
    for number, line in enumerate((text or "").split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError("%s line %d: %r is not KEY=VALUE; write KEY=VALUE, or start a comment with #"
                             % (source, number, line))
        key, value = line.split("=", 1)
        key = key.strip()
        problem = key_error(key)
        if problem:
            raise ValueError("%s line %d: %r has %s; write KEY=VALUE with a key of no whitespace (no 'export')"
                             % (source, number, line, problem))
        env[key] = value
    return env


def render(env, service):
    """The text of ``service``'s env file holding ``env`` (values through :func:`env_text`); ValueError for a
    variable parse() could not read back."""
    lines = ["# " + HEADER % service]
    for key, value in sorted((env or {}).items(), key=lambda kv: (str(kv[0]).lower(), str(kv[0]))):
        key, value = str(key), env_text(value)
        problem = key_error(key)
        if not problem and ("\n" in value or "\r" in value or "\0" in value):
            problem = "a value with a line break or NUL"
        if problem:
            raise ValueError("%r=%r cannot be one KEY=VALUE line of an env file: %s" % (key, value, problem))
        lines.append("%s=%s" % (key, value))
    return "\n".join(lines) + "\n"


def read(path):
    """The variables of the env file at ``path``; {} when there is none."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return parse(handle.read(), source=path)
    except FileNotFoundError:
        return {}
