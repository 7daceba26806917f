"""Shared fixtures: real NATS clusters started from the pip-installed nats-server."""

from __future__ import annotations

import pytest

from lab.nats_cluster import NatsCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A 3-node JetStream cluster shared by the module tests (each test uses its own stream names)."""
    with NatsCluster(tmp_path_factory.mktemp("cluster"), size=3, name="c") as c:
        yield c
