"""The env file format of the lab services (plugins/module_utils/env_file.py), read by both of its readers: the
service_driver filter (what set_env and status read) and the lab services at start (lab/services/common.py, from a
real file). Before this module the two were separate parsers and disagreed on the DISAGREED cases below (the filter
split lines with str.splitlines and kept trailing whitespace; the services read with universal newlines and
stripped each line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.athlete_ally.nats.plugins.filter import service_driver as sd  # noqa: E402
from ansible_collections.athlete_ally.nats.plugins.module_utils import env_file  # noqa: E402
from lab.services import common  # noqa: E402

# (file text, variables): the old filter read the value before the '|', the old service reader the one after.
DISAGREED = [
    ("A=x  \n", {"A": "x  "}),                 # 'x  ' | 'x': trailing whitespace is part of the value
    ("A=  \n", {"A": "  "}),                   # '  ' | '': a value of spaces
    ("A=x\ty\t\n", {"A": "x\ty\t"}),           # 'x\ty\t' | 'x\ty'
    ("A=a\x0cb\n", {"A": "a\x0cb"}),           # 'a' | 'a\x0cb': a form feed does not end a line
    ("A=a\x0bb\n", {"A": "a\x0bb"}),           # 'a' | 'a\x0bb': nor a vertical tab
    ("A=a\x1cb\n", {"A": "a\x1cb"}),           # 'a' | 'a\x1cb': nor a file separator
    ("A=a\x85b\n", {"A": "a\x85b"}),           # 'a' | 'a\x85b': nor NEL
    ("A=a\u2028b\n", {"A": "a\u2028b"}),       # 'a' | 'a\u2028b': nor a Unicode line separator
]
AGREED = [
    ("", {}),
    ("\n\n  \n", {}),
    ("# a comment\n   # an indented one\n", {}),
    ("A=1", {"A": "1"}),                       # no newline at the end
    ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),  # CRLF
    ("A=b=c\n", {"A": "b=c"}),                 # split at the first '='
    ("A=\n", {"A": ""}),                       # empty, and set
    ("  A = 1\n", {"A": " 1"}),                # whitespace around the key only is dropped
    ("A=\"q\"\nB='r'\n", {"A": "\"q\"", "B": "'r'"}),  # quotes are value characters
    ("A=x # not a comment\n", {"A": "x # not a comment"}),
    ("A=$HOME\\n\n", {"A": "$HOME\\n"}),       # no expansion, no escapes
    ("A=caf\u00e9\n", {"A": "caf\u00e9"}),     # UTF-8
    ("A=1\nA=2\n", {"A": "2"}),                # the last line wins
]


def read_by_the_service(tmp_path, text):
    path = tmp_path / "svc.env"
    path.write_bytes(text.encode("utf-8"))
    return common.read_env_file(str(path))


@pytest.mark.parametrize("text, env", DISAGREED + AGREED)
def test_both_readers_read_the_format(tmp_path, text, env):
    assert sd.env_file_parse(text) == env
    assert read_by_the_service(tmp_path, text) == env


@pytest.mark.parametrize("text, line, problem", [
    ("A=1\nno equals\n", 2, "'no equals' is not KEY=VALUE"),
    ("export A=1\n", 1, "'export A=1' has a key with whitespace"),
    ("=x\n", 1, "'=x' has an empty key"),
    ("A B=1\n", 1, "'A B=1' has a key with whitespace"),
])
def test_a_line_the_format_refuses_is_named_by_both_readers(tmp_path, text, line, problem):
    with pytest.raises(ValueError) as err:
        env_file.parse(text, source="x.env")
    assert str(err.value).startswith("x.env line %d: %s; " % (line, problem))
    path = tmp_path / "svc.env"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        common.read_env_file(str(path))
    assert str(err.value).startswith("%s line %d: %s; " % (path, line, problem))


ROUND_TRIP = {
    "PLAIN": "single", "EMPTY": "", "SPACES": "  a b  ", "QUOTES": "\"x\" 'y'", "EQUALS": "a=b==c", "HASH": "#x",
    "DOLLAR": "$HOME", "BACKSLASH": "a\\nb", "UNICODE": "caf\u00e9 \u2028 \x0c \x85", "URL": "postgres://u:p@h/db?a=b",
    "lower": "1", "TRUE": True, "N": 3, "LIST": [1, "x"],
}


def test_render_then_parse_gives_the_variables_back_in_both_readers(tmp_path):
    text = env_file.render(ROUND_TRIP, "svc")
    back = {k: env_file.env_text(v) for k, v in ROUND_TRIP.items()}
    assert back["TRUE"] == "true" and back["N"] == "3" and back["LIST"] == "[1, \"x\"]"
    assert env_file.parse(text) == back
    assert sd.env_file_parse(text) == back
    assert read_by_the_service(tmp_path, text) == back
    assert env_file.render(env_file.parse(text), "svc") == text  # and renders to the same text again


def test_render_has_a_header_and_sorts_keys_case_insensitively_then_by_code_point():
    assert env_file.render({"b": "2", "A": "1", "a": "0"}, "svc") == (
        "# Environment of svc (read at start; change it with service_driver set_env)\nA=1\na=0\nb=2\n")


@pytest.mark.parametrize("env, problem", [
    ({"A": "1\n2"}, "a value with a line break or NUL"),
    ({"A": "1\r2"}, "a value with a line break or NUL"),
    ({"A": "1\x002"}, "a value with a line break or NUL"),
    ({"A=B": "1"}, "a key with '='"),
    ({"export A": "1"}, "a key with whitespace"),
    ({"": "1"}, "an empty key"),
])
def test_render_refuses_what_would_not_read_back(env, problem):
    with pytest.raises(ValueError) as err:
        env_file.render(env, "svc")
    assert str(err.value).endswith("cannot be one KEY=VALUE line of an env file: " + problem)


def test_a_missing_file_is_an_empty_environment(tmp_path):
    assert env_file.read(str(tmp_path / "none.env")) == {}
    assert common.read_env_file(str(tmp_path / "none.env")) == {} and common.read_env_file(None) == {}


@pytest.mark.parametrize("service", ["ingest", "normalize"])
def test_a_service_refuses_a_bad_env_file_in_one_line(tmp_path, service):
    """At start, before it connects anywhere: the one line names the file, the line and the fix (supervisord logs
    it and retries), instead of a traceback or a variable silently skipped."""
    path = tmp_path / "svc.env"
    path.write_text("A=1\nexport B=2\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(REPO / "lab" / "services" / ("%s.py" % service)), "--name", "svc",
                           "--env-file", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("svc cannot start: %s line 2: 'export B=2' has a key with whitespace; write KEY=VALUE "
                           "with a key of no whitespace (no 'export')\n" % path)
