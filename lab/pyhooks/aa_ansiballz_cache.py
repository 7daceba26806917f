"""Compiled-code cache for Ansible module payloads (AnsiballZ), for this project's venv only.

Every Ansible module run imports ansible.module_utils (and this collection's module_utils) from a fresh zip in a
fresh temp directory, and zipimport compiles each of those files from source every time: measured here, compiling
is about half of a no-op module run (bench/module_overhead.py prints the figures with and without this cache).
This keeps each compiled module, keyed by the SHA-256 of its source and the interpreter's bytecode magic, under
<venv>/ansiballz-code-cache/, so the same source is compiled once. What runs is unchanged: the same source bytes
compile to the same code. Only code objects' file names keep the temp path of their first run (that directory is
deleted after each run anyway).

It also installs the controller's payload cache (aa_payload_cache.py: the module_utils walk done once per source).
Loaded by the .pth file `make setup` writes into the venv; AA_ANSIBALLZ_CACHE=0 turns both off. Production hosts and
execution environments do not have it, and do not need it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import sys
import zipimport

import aa_payload_cache

CACHE_DIR = os.path.join(sys.prefix, "ansiballz-code-cache")
PAYLOAD_MARK = "_payload.zip" + os.sep  # AnsiballZ: <tmp>/ansible_<module>_payload_<rand>/ansible_<module>_payload.zip
_compile_source = zipimport._compile_source


def _cached_compile_source(pathname, source):
    if PAYLOAD_MARK not in pathname:
        return _compile_source(pathname, source)
    inner = pathname.split(PAYLOAD_MARK, 1)[1]
    key = hashlib.sha256(importlib.util.MAGIC_NUMBER + inner.encode() + b"\0" + source).hexdigest()
    path = os.path.join(CACHE_DIR, key)
    try:
        with open(path, "rb") as handle:
            return marshal.loads(handle.read())
    except (OSError, ValueError, EOFError, TypeError):
        pass  # not cached yet, or unreadable: compile
    code = _compile_source(pathname, source)
    try:
        os.makedirs(CACHE_DIR, exist_ok=True)
        partial = "%s.%d.tmp" % (path, os.getpid())
        with open(partial, "wb") as handle:
            handle.write(marshal.dumps(code))
        os.replace(partial, path)  # atomic: concurrent module runs never read half a file
    except OSError:
        pass  # a read-only venv just compiles every time
    return code


def install():
    if os.environ.get("AA_ANSIBALLZ_CACHE", "1") != "0":
        zipimport._compile_source = _cached_compile_source
        aa_payload_cache.install()


install()
