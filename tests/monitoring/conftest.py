"""The lab-based monitoring tests share the rehearsal lab fixture of tests/lab (one lab for the module)."""

from tests.lab.conftest import lab  # noqa: F401 - the fixture, re-exported for tests/monitoring

__all__ = ["lab"]
