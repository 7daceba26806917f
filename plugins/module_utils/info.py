# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)
"""Read-only facts for jetstream_info: cluster peers, account usage, streams, one stream, one consumer, and any
number of named streams and consumers at once (``stream_list``, ``consumer_list``: a play that reads every stream and
consumer of its topology runs the module once, not once per item; each run is a Python process costing ~0.3 s CPU).

Cluster peers come from ``$SYS.REQ.SERVER.PING.JSZ``, which every server answers, but only for a
connection in the system account. Only the meta leader knows whether the other peers are current,
so the peer list is built from the leader's reply and each server's own reply adds its version.
"""

from __future__ import annotations

import asyncio
import json

from ansible_collections.athlete_ally.nats.plugins.module_utils import durations, waiter
from ansible_collections.athlete_ally.nats.plugins.module_utils.errors import JetStreamError
from ansible_collections.athlete_ally.nats.plugins.module_utils.jetstream_api import JetStreamClient

GATHER_CHOICES = ["cluster", "account", "streams", "stream", "consumer", "stream_list", "consumer_list"]
JSZ_SUBJECT = "$SYS.REQ.SERVER.PING.JSZ"
SYSTEM_HINT = ("set system_user/system_password or system_creds_file to a system-account user "
               "(the connection options are used when they are unset)")
# After the first server answered, how long to wait for the others when the cluster size is unknown
# or a server is down (every live server answers within a few milliseconds).
STRAGGLER_WAIT = 1.0


# What a cluster converges to (wait_for): whether it holds on the gathered facts, and what is still missing.
def _current(s):
    return s["exists"] and bool(s["summary"]["leader"]) and s["summary"]["replicas_current"] == s["summary"]["replicas"]


def _not_current(name, s):
    if not s["exists"]:
        return "stream %s does not exist" % name
    return "stream %s: leader %s, %s of %s replicas current" % (
        name, s["summary"]["leader"], s["summary"]["replicas_current"], s["summary"]["replicas"])


def _stream_current(r, _p):
    return _current(r["stream"])


def _stream_missing(r, p):
    return _not_current(p["stream"], r["stream"])


def _streams_current(r, _p):
    return all(_current(s) for s in r["stream_list"].values())


def _streams_missing(r, _p):
    return "; ".join(_not_current(name, s) for name, s in r["stream_list"].items() if not _current(s))


def _cluster_missing(r, _p):
    c = r["cluster"]
    return "%s of %s JetStream peers current (%s)" % (
        c["peers_current"], c["cluster_size"],
        ", ".join("%s%s" % (x["name"], "" if x["current"] else " behind") for x in c["peers"]))


def _pending_below(r, p):
    return r["consumer"]["exists"] and r["consumer"]["num_pending"] < p["max_pending"]


def _below(c, bound):
    return c["exists"] and c["num_pending"] < bound


def _not_below(c, stream, name, bound):
    if not c["exists"]:
        return "consumer %s on %s does not exist" % (name, stream)
    return "consumer %s on %s: %s pending, waiting for fewer than %s" % (name, stream, c["num_pending"], bound)


def _pending_missing(r, p):
    return _not_below(r["consumer"], p["stream"], p["consumer"], p["max_pending"])


def _consumers_below(r, _p):
    return all(_below(c, c["max_pending"]) for c in r["consumer_list"].values())


def _consumers_missing(r, _p):
    return "; ".join(_not_below(c, c["stream"], c["name"], c["max_pending"])
                     for c in r["consumer_list"].values() if not _below(c, c["max_pending"]))


WAIT_CONDITIONS = {
    "stream_current": ("stream", _stream_current, _stream_missing),
    "streams_current": ("stream_list", _streams_current, _streams_missing),
    "cluster_current": ("cluster", lambda r, _p: r["cluster"]["all_current"], _cluster_missing),
    "consumer_pending_below": ("consumer", _pending_below, _pending_missing),
    "consumers_pending_below": ("consumer_list", _consumers_below, _consumers_missing),
}


def wait_list(params):
    """The wait_for conditions, every one of which must hold (one name is a list of one)."""
    value = params.get("wait_for") or []
    return [value] if isinstance(value, str) else list(value)


def gather_list(params):
    """The sections to collect: explicit ``gather``, else account + streams (+ stream/consumer when named)."""
    gather = list(params.get("gather") or [])
    if not gather:
        gather = [WAIT_CONDITIONS[name][0] for name in wait_list(params)]
    if not gather:
        gather = ["account", "streams"]
        if params.get("stream"):
            gather.append("stream")
        if params.get("consumer"):
            gather.append("consumer")
        if params.get("stream_list"):
            gather.append("stream_list")
        if params.get("consumer_list"):
            gather.append("consumer_list")
    out = []
    for item in gather:
        if item not in out:
            out.append(item)
    return out


# -- cluster ---------------------------------------------------------------------------------
def _system_params(params):
    """Connection parameters for the system-account connection, or None to reuse the main one."""
    if not (params.get("system_user") or params.get("system_creds_file")):
        return None
    sysp = dict(params)
    sysp.update(user=params.get("system_user"), password=params.get("system_password"),
                creds_file=params.get("system_creds_file"), token=None, nkey_seed=None)
    return sysp


def _ping(js, subject, timeout):
    """Publish one request on ``subject`` and collect every server's JSON reply until ``timeout``."""

    async def collect():
        nc = js.nc
        replies, state = [], {"no_responders": False, "expected": None}
        done = asyncio.Event()
        first = asyncio.Event()

        async def on_reply(msg):
            if msg.headers and msg.headers.get("Status") == "503":
                state["no_responders"] = True
                done.set()
                return
            try:
                data = json.loads(msg.data)
            except ValueError:
                return
            if not isinstance(data, dict):
                return
            replies.append(data)
            meta = (data.get("data") or {}).get("meta_cluster") or {}
            size = meta.get("cluster_size")
            if size:
                state["expected"] = max(state["expected"] or 0, size)
            first.set()
            if state["expected"] and len(replies) >= state["expected"]:
                done.set()

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_reply)
        try:
            await nc.publish(subject, b"", reply=inbox)
            await nc.flush(timeout=max(1, int(timeout)))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                await asyncio.wait_for(first.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            if first.is_set() and not done.is_set():
                remaining = max(0.0, min(STRAGGLER_WAIT, deadline - loop.time()))
                try:
                    await asyncio.wait_for(done.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        finally:
            await sub.unsubscribe()
        return replies, state["no_responders"]

    return js.run(collect())


def _peer_from_reply(reply):
    server = reply.get("server") or {}
    return dict(version=server.get("ver"), jetstream=bool(server.get("jetstream")),
                cluster=server.get("cluster"), host=server.get("host"), responded=True)


def peers_from_replies(replies):
    """Peer list (one entry per JetStream meta-group member and per answering server)."""
    by_name = {}
    for reply in replies:
        name = (reply.get("server") or {}).get("name")
        if name:
            by_name[name] = reply
    metas = [((r.get("data") or {}).get("meta_cluster") or {}, (r.get("server") or {}).get("name"))
             for r in replies]
    leader = next((m.get("leader") for m, _n in metas if m.get("leader")), None)
    # The leader's view; else any server with a meta view; else (stand-alone server) the first reply.
    own_meta, reporter = next(((m, n) for m, n in metas if n == leader),
                              next(((m, n) for m, n in metas if m), metas[0] if metas else ({}, None)))
    peers = []
    if reporter is not None:
        clustered = bool(own_meta.get("replicas")) or (own_meta.get("cluster_size") or 1) > 1
        # The reporting server itself: current when it is the leader (or runs stand-alone).
        me_current = reporter == leader or not clustered
        peers.append(dict(name=reporter, leader=reporter == leader or not clustered, current=me_current,
                          offline=False, lag=0, active_ms=0))
        for rep in own_meta.get("replicas") or []:
            peers.append(dict(name=rep.get("name"), leader=rep.get("name") == leader,
                              current=bool(rep.get("current")), offline=bool(rep.get("offline")),
                              lag=rep.get("lag", 0), active_ms=int((rep.get("active") or 0) / 1e6)))
    known = set(p["name"] for p in peers)
    for name in sorted(by_name):  # servers outside the meta group (JetStream disabled)
        if name not in known:
            peers.append(dict(name=name, leader=False, current=False, offline=False, lag=0, active_ms=0))
    for peer in peers:
        reply = by_name.get(peer["name"])
        if reply is not None:
            peer.update(_peer_from_reply(reply))
        else:
            peer.update(version=None, jetstream=None, cluster=None, host=None, responded=False)
        if reply is not None and not peer["jetstream"]:
            peer["current"] = False
    peers.sort(key=lambda p: p["name"] or "")
    return dict(
        name=own_meta.get("name"), leader=leader,
        cluster_size=own_meta.get("cluster_size") or len(peers),
        quorum_needed=own_meta.get("quorum_needed"),
        peers=peers,
        peers_current=sum(1 for p in peers if p["current"] and not p["offline"]),
        servers_responded=len(by_name),
        all_current=bool(peers) and all(p["current"] and not p["offline"] and p["responded"] for p in peers),
    )


def cluster_info(module, js):
    sysp = _system_params(module.params)
    sysjs = None
    if sysp is not None:
        sysjs = JetStreamClient(sysp)
        try:
            sysjs.connect()
        except JetStreamError as exc:
            sysjs.close()
            raise JetStreamError("system-account connection failed: %s (system_user/system_password or "
                                 "system_creds_file)" % exc)
    try:
        conn = sysjs or js
        replies, no_responders = _ping(conn, JSZ_SUBJECT, conn.timeout)
        if not replies:
            who = ("system_user/system_creds_file" if sysjs is not None else "the connection user")
            why = "no responder" if no_responders else "no reply within %ss" % conn.timeout
            raise JetStreamError("cluster facts need a system-account connection: %s got %s on %s at %s; %s"
                                 % (who, why, JSZ_SUBJECT, conn.where, SYSTEM_HINT))
        return peers_from_replies(replies)
    finally:
        if sysjs is not None:
            sysjs.close()


# -- account / streams / consumer ------------------------------------------------------------
def _strip(info):
    return {k: v for k, v in (info or {}).items() if k != "type"}


def stream_summary(info):
    config = info.get("config") or {}
    state = info.get("state") or {}
    cluster = info.get("cluster") or {}
    return dict(
        name=config.get("name"), subjects=config.get("subjects") or [],
        messages=state.get("messages", 0), bytes=state.get("bytes", 0),
        consumers=state.get("consumer_count", 0), replicas=config.get("num_replicas", 1),
        storage=config.get("storage"), retention=config.get("retention"), max_age=config.get("max_age", 0),
        leader=cluster.get("leader"),
        replicas_current=sum(1 for r in cluster.get("replicas") or [] if r.get("current")) +
        (1 if cluster.get("leader") else 0),
    )


def stream_facts(js, name):
    info = js.stream_info(name)
    if info is None:
        return dict(exists=False, name=name)
    out = _strip(info)
    out.update(exists=True, name=name, summary=stream_summary(info))
    return out


def consumer_facts(js, stream, name):
    info = js.consumer_info(stream, name)
    if info is None:
        return dict(exists=False, stream=stream, name=name)
    out = _strip(info)
    out.update(exists=True, stream=stream, name=name)
    return out


def gather_facts(module, js):
    params = module.params
    gather = gather_list(params)
    if ("stream" in gather or "consumer" in gather) and not params.get("stream"):
        raise JetStreamError("gather %s needs the 'stream' option" % ("consumer" if "consumer" in gather else "stream"))
    if "consumer" in gather and not params.get("consumer"):
        raise JetStreamError("gather consumer needs the 'consumer' option")
    for section in ("stream_list", "consumer_list"):
        if section in gather and not params.get(section):
            raise JetStreamError("gather %s needs the '%s' option (a non-empty list)" % (section, section))
    result = dict(changed=False, gathered=gather)
    if "cluster" in gather:
        result["cluster"] = cluster_info(module, js)
    if "account" in gather:
        result["account"] = _strip(js.account_info())
    if "streams" in gather:
        result["streams"] = sorted((stream_summary(s) for s in js.streams()), key=lambda s: s["name"] or "")
    if "stream" in gather:
        result["stream"] = stream_facts(js, params["stream"])
    if "consumer" in gather:
        result["consumer"] = consumer_facts(js, params["stream"], params["consumer"])
    if "stream_list" in gather:
        result["stream_list"] = dict((name, stream_facts(js, name)) for name in params["stream_list"])
    if "consumer_list" in gather:
        result["consumer_list"] = consumer_list_facts(js, params)
    return result


def consumer_list_facts(js, params):
    """``{"STREAM/name": consumer facts + its max_pending}``: the entry's bound, else the module's max_pending."""
    out = {}
    for entry in params["consumer_list"]:
        facts = consumer_facts(js, entry["stream"], entry["name"])
        bound = entry.get("max_pending")
        facts["max_pending"] = (params.get("max_pending") or 0) if bound is None else bound
        out["%s/%s" % (entry["stream"], entry["name"])] = facts
    return out


def wait_for(module, js, poll=0.5):
    """Gather until the ``wait_for`` condition holds; on timeout fail with one line and the last facts seen."""
    params = module.params
    names = wait_list(params)
    conditions = [WAIT_CONDITIONS[name] for name in names]
    gathered = gather_list(params)
    for name, (section, _holds, _describe) in zip(names, conditions):
        if section not in gathered:
            raise JetStreamError("wait_for %s needs gather to include %s" % (name, section))

    def holds(r):
        return all(h(r, params) for _s, h, _d in conditions)

    def describe(r):  # only what still does not hold
        return "; ".join(d(r, params) for _s, h, d in conditions if not h(r, params))

    timeout = durations.to_seconds(params["timeout"], "timeout")
    try:
        result, waited = waiter.poll_until(  # a failed read (a leader election in progress) is "not yet"
            lambda: gather_facts(module, js), holds, describe, timeout, poll=poll, transient=(JetStreamError,))
    except waiter.TimedOut as exc:
        last = exc.last if exc.error is None else dict(last_error=str(exc.error))
        raise JetStreamError("still not %s after %ss: %s" % (" and ".join(names), timeout, exc.line),
                             waited_seconds=exc.waited, **{k: v for k, v in last.items() if k != "changed"})
    result["waited_seconds"] = waited
    return result


def run(module, js):
    return wait_for(module, js) if module.params.get("wait_for") else gather_facts(module, js)
