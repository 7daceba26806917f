"""A clock the unit tests move by hand: ``clock()`` reads it, ``clock.sleep(s)`` advances it (no real waiting)."""

from __future__ import annotations


class FakeClock(object):
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s
