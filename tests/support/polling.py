"""The tests' one bounded poll for a condition the lab reaches by itself."""

from __future__ import annotations

import time


def wait_for(predicate, timeout, interval=0.1):
    """``predicate()`` until it is truthy or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
