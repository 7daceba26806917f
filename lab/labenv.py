"""Reading the lab's endpoint file (.lab/env, written by `make lab-up`)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def env_path(path=None):
    if path:
        return Path(path)
    if os.environ.get("AA_LAB_DIR"):
        return Path(os.environ["AA_LAB_DIR"]) / "env"
    return REPO / ".lab" / "env"


def load(path=None):
    """KEY=VALUE lines of .lab/env as a dict; raises FileNotFoundError with a hint when the lab is not up."""
    p = env_path(path)
    if not p.exists():
        raise FileNotFoundError("%s not found: run `make lab-up` first" % p)
    env = {}
    for line in p.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v
    return env
