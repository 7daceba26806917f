"""Raw JetStream API requests through nats-py, independent of the code under test."""

from __future__ import annotations

import asyncio
import json


def api(servers, subject, body=None, **connect):
    """``$JS.API.<subject>`` with ``body`` as JSON; ``servers`` is a list or a comma-separated string."""
    import nats

    urls = servers.split(",") if isinstance(servers, str) else list(servers)

    async def go():
        nc = await nats.connect(urls, **connect)
        try:
            msg = await nc.request("$JS.API." + subject, json.dumps(body).encode() if body is not None else b"",
                                   timeout=5)
            return json.loads(msg.data)
        finally:
            await nc.close()
    return asyncio.run(go())


def publish_acked(servers, subject, count):
    """``count`` messages ``m0``, ``m1``, ... to ``subject``, each waiting for its stream's ack (a request)."""
    import nats

    urls = servers.split(",") if isinstance(servers, str) else list(servers)

    async def go():
        nc = await nats.connect(urls)
        try:
            for i in range(count):
                await nc.request(subject, b"m%d" % i, timeout=5)
        finally:
            await nc.close()
    asyncio.run(go())
