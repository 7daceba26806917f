"""lab/pyhooks/aa_ansiballz_cache.py: AnsiballZ payload modules are compiled once, everything else as before."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import zipfile
import zipimport
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab" / "pyhooks"))
cache_mod = importlib.import_module("aa_ansiballz_cache")

SOURCE = b"VALUE = 6 * 7\ndef twice(x):\n    return 2 * x\n"


@pytest.fixture
def hook(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "CACHE_DIR", str(tmp_path / "cache"))
    compiled = []
    monkeypatch.setattr(cache_mod, "_compile_source", lambda p, s: compiled.append(p) or compile(s, p, "exec"))
    return compiled


def payload_path(tmp_path, run):
    return str(tmp_path / ("ansible_mod_payload_%s" % run) / "ansible_mod_payload.zip" / "ansible" / "mod.py")


def test_a_payload_module_is_compiled_once_and_runs_the_same(tmp_path, hook):
    first = cache_mod._cached_compile_source(payload_path(tmp_path, "a1"), SOURCE)
    second = cache_mod._cached_compile_source(payload_path(tmp_path, "b2"), SOURCE)  # another run's temp dir
    assert len(hook) == 1, hook
    for code in (first, second):
        namespace = {}
        exec(code, namespace)  # noqa: S102 - the point is that the cached code runs like the compiled one
        assert namespace["VALUE"] == 42 and namespace["twice"](21) == 42


def test_changed_source_or_another_file_is_compiled_again(tmp_path, hook):
    cache_mod._cached_compile_source(payload_path(tmp_path, "a"), SOURCE)
    cache_mod._cached_compile_source(payload_path(tmp_path, "a"), SOURCE + b"OTHER = 1\n")
    cache_mod._cached_compile_source(payload_path(tmp_path, "a").replace("mod.py", "other.py"), SOURCE)
    assert len(hook) == 3


def test_zips_that_are_not_payloads_are_left_alone(tmp_path, hook):
    cache_mod._cached_compile_source(str(tmp_path / "lib.zip" / "mod.py"), SOURCE)
    cache_mod._cached_compile_source(str(tmp_path / "lib.zip" / "mod.py"), SOURCE)
    assert len(hook) == 2 and not (tmp_path / "cache").exists()


def test_a_corrupt_cache_entry_is_compiled_again(tmp_path, hook):
    cache_mod._cached_compile_source(payload_path(tmp_path, "a"), SOURCE)
    for entry in (tmp_path / "cache").iterdir():
        entry.write_bytes(b"not marshal data")
    code = cache_mod._cached_compile_source(payload_path(tmp_path, "a"), SOURCE)
    assert len(hook) == 2
    namespace = {}
    exec(code, namespace)  # noqa: S102
    assert namespace["VALUE"] == 42


def test_zipimport_uses_it_for_a_real_payload_zip(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(zipimport, "_compile_source", cache_mod._cached_compile_source)
    payload = tmp_path / "ansible_x_payload_r" / "ansible_x_payload.zip"
    payload.parent.mkdir()
    with zipfile.ZipFile(payload, "w") as zf:
        zf.writestr("aa_cache_probe.py", SOURCE)
    spec = zipimport.zipimporter(str(payload)).find_spec("aa_cache_probe")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.VALUE == 42 and len(list((tmp_path / "cache").iterdir())) == 1
