"""Payload cache for Ansible's controller: the module_utils a module needs are found once per source, not per process.

Before a module's first run in an ansible-playbook process, Ansible walks the module's imports (ast-parses it and
every module_util it reaches, searches the collection paths for each) to build the AnsiballZ zip. It keeps the
result only in that process's temp dir, so every ansible-playbook run pays it again for every module it uses:
about 0.3 s per module here, 30-40 times per `make rehearse` (bench/module_overhead.py prints the figures with and
without this cache). This keeps what that walk wrote into the zip under <venv>/ansiballz-payload-cache/ (or
$AA_PAYLOAD_CACHE_DIR).

It is content-checked, never trusted by name: the key holds the ansible-core version, the module's source, the
zip compression and the module_utils/collection search paths, and an entry is used only while every file it was
built from still has the same content (an edited module_util, or one that disappeared, means a fresh walk). Runs
with a debugger or coverage extension are not cached.

aa_ansiballz_cache installs it (through the .pth `make setup` writes into the venv); AA_ANSIBALLZ_CACHE=0 turns it
off. Production hosts and execution environments do not have it, and do not need it.
"""

from __future__ import annotations

import hashlib
import os
import sys

CACHE_DIR = os.environ.get("AA_PAYLOAD_CACHE_DIR") or os.path.join(sys.prefix, "ansiballz-payload-cache")
TARGET = "ansible.executor.module_common"


class _Recorder:
    """Stands in for the payload's ZipFile while Ansible's walk writes to it; keeps what was written, and from where."""

    def __init__(self, zf, origin_of):
        self._zf = zf
        self._origin_of = origin_of
        self.members = []

    def writestr(self, zinfo, data, *args, **kwargs):
        path = self._origin_of(data)
        self.members.append((zinfo.filename, path, _file_digest(path) if path else None, _plain_bytes(data)))
        return self._zf.writestr(zinfo, data, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._zf, name)


def _plain_bytes(data):
    """Ansible tags sources (str or bytes) with their origin; the cache keeps plain bytes."""
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)


def _file_digest(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None  # a synthesized package init: valid while there is still no file


def _still_current(members):
    return all(path is None or _file_digest(path) == digest for _name, path, digest, _data in members)


def _key(common, module_fqn, module_data, zf):
    from ansible.plugins.loader import module_utils_loader
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    try:
        collection_paths = AnsibleCollectionConfig.collection_paths
    except NotImplementedError:
        return None  # no collection finder in this process: nothing to key the search on, so no caching
    parts = [common.__version__, module_fqn, str(zf.compression),
             repr(module_utils_loader._get_paths(subdirs=False)), repr(collection_paths)]
    digest = hashlib.sha256("\0".join(parts).encode())
    digest.update(b"\0" + _plain_bytes(module_data))
    return digest.hexdigest()


def _load(path):
    import pickle  # pylint: disable=import-outside-toplevel  # only ansible-playbook needs it, not every Python start

    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError):
        return None  # not cached yet, or unreadable: walk again


def _store(path, entry):
    import pickle  # pylint: disable=import-outside-toplevel

    partial = "%s.%d.tmp" % (path, os.getpid())
    try:
        os.makedirs(CACHE_DIR, exist_ok=True)
        with open(partial, "wb") as handle:
            pickle.dump(entry, handle)
        os.replace(partial, path)  # atomic: concurrent builds never read half a file
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        # a read-only venv, or metadata a later ansible-core cannot pickle: walk every time
        try:
            os.unlink(partial)
        except OSError:
            pass


def cached(common, walk):
    """A recursive_finder with the same signature and output as `walk` (module_common's own)."""

    def origin_of(data):
        origin = common.Origin.get_tag(data)
        return origin.path if origin else None

    def recursive_finder(name, module_fqn, module_data, zf, date_time, extension_manager):
        key = None
        if not (extension_manager.debugger_enabled or extension_manager.module_names):
            key = _key(common, module_fqn, module_data, zf)
        if key is None:
            return walk(name, module_fqn, module_data, zf, date_time, extension_manager)
        path = os.path.join(CACHE_DIR, key)
        entry = _load(path)
        if entry and _still_current(entry["members"]):
            for filename, _path, _digest, data in entry["members"]:
                zf.writestr(common._make_zinfo(filename, date_time, zf=zf), data)
            return entry["metadata"]
        recorder = _Recorder(zf, origin_of)
        metadata = walk(name, module_fqn, module_data, recorder, date_time, extension_manager)
        _store(path, {"members": recorder.members, "metadata": metadata})
        return metadata

    return recursive_finder


def patch(common):
    common.recursive_finder = cached(common, common.recursive_finder)


class _PatchOnImport:
    """Patches module_common right after it is imported, so processes that never import it do not pay for it.
    (A meta path finder needs only find_spec; importlib.abc is not imported: every Python start in the venv runs
    this file, module runs included.)"""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        import importlib.util  # pylint: disable=import-outside-toplevel

        sys.meta_path.remove(self)  # once, and without finding ourselves again
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def install():
    if TARGET in sys.modules:
        patch(sys.modules[TARGET])
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
