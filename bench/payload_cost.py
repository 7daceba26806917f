"""What one run of each module costs before it does any work: the AnsiballZ payload Ansible ships and its imports.

Every module run is a new Python process that unpacks the module's payload (a zip of the module and every
module_util it imports, found by Ansible's recursive_finder) into a temp dir and imports from it with zipimport.
A zip holds sources only, so each run compiles every module_util it imports again: the fewer (and smaller)
module_utils a module imports, the cheaper each of its runs.

This runs one task per module (``plugins/modules``, plus ``ansible.builtin.stat`` for reference) with no arguments
through ``ansible-playbook`` with ANSIBLE_KEEP_REMOTE_FILES=1 (each fails argument validation after its imports),
then for each kept AnsiballZ file prints:

* ``files``/``lines``: the payload's Python files and their lines (ansible-core's and this collection's);
* ``compile ms``: compiling every file of the payload once, in this process (what zipimport redoes per run);
* ``run ms``/``cpu ms``: the median wall and CPU time (user + system) of running the kept file as Ansible does
  (Python start, unzip, imports, argument validation), ``--runs`` times; CPU is the figure to compare on a busy
  machine;
* ``import ms``: from ``python -X importtime``: the imports' own time grouped as ansible.module_utils,
  the collection's module_utils and everything else (stdlib, nats-py, ...); imports done lazily (inside
  functions that need a connection) are not seen here;
* the collection module_utils in the payload, largest first.

    .venv/bin/python bench/payload_cost.py [--runs 5] [--module jetstream_stream ...]

No assertions; the figures vary with the machine's load (the load average is printed).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.ansible_run import BIN, run_playbook_file  # noqa: E402

COLLECTION = "athlete_ally.nats"
ZIP_RE = re.compile(r"zip_data=(?:'|\")([A-Za-z0-9+/=]+)(?:'|\")")
IMPORT_RE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def module_names(only):
    """The collection's modules that run on the target (lab_service documents an action plugin), and stat."""
    action_only = {p.stem for p in (REPO / "plugins" / "action").glob("*.py")}
    names = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py")
                   if p.stem not in action_only and not p.stem.startswith("_"))
    if only:
        names = [n for n in names if n in only]
    return ["%s.%s" % (COLLECTION, n) for n in names] + ["ansible.builtin.stat"]


def keep_payloads(modules, tmp):
    """Run each module once with no arguments, keeping its AnsiballZ file; {module fqcn: path}."""
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": [{"name": m, m: {}, "ignore_errors": True} for m in modules]}]
    path = Path(tmp) / "payloads.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    remote = Path(tmp) / "remote"
    res = run_playbook_file(path, ["-i", "localhost,"], env={
        "ANSIBLE_KEEP_REMOTE_FILES": "1", "ANSIBLE_PIPELINING": "False", "ANSIBLE_REMOTE_TMP": str(remote)})
    if res.data is None:
        sys.exit("the payload playbook did not run: %s" % (res.stderr or res.stdout)[-2000:])
    kept = {}
    for module in modules:
        short = module.rsplit(".", 1)[-1]
        found = sorted(remote.glob("ansible-tmp-*/AnsiballZ_%s.py" % short))
        if found:
            kept[module] = found[-1]
    return kept


def payload_files(ansiballz):
    """{name in the zip: source text} of a kept AnsiballZ file."""
    match = ZIP_RE.search(ansiballz.read_text())
    if not match:
        raise SystemExit("no zip_data in %s: the AnsiballZ wrapper changed" % ansiballz)
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(match.group(1)))) as zf:
        return {name: zf.read(name).decode("utf-8", "replace") for name in zf.namelist() if name.endswith(".py")}


def compile_seconds(files):
    started = time.perf_counter()
    for name, source in files.items():
        compile(source, name, "exec", dont_inherit=True)
    return time.perf_counter() - started


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_seconds(ansiballz, runs):
    """Median (wall, CPU) seconds of running the kept file; CPU (user + system) barely moves with other load."""
    walls, cpus = [], []
    for _i in range(runs):
        started, cpu = time.perf_counter(), children_cpu()
        subprocess.run([str(BIN / "python"), str(ansiballz)], capture_output=True, check=False, timeout=120)
        walls.append(time.perf_counter() - started)
        cpus.append(children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def import_ms(ansiballz):
    """Self time of every import of one run, grouped: (ansible.module_utils, collection module_utils, other)."""
    proc = subprocess.run([str(BIN / "python"), "-X", "importtime", str(ansiballz)], capture_output=True, text=True,
                          check=False, timeout=120)
    groups = [0, 0, 0]
    for line in proc.stderr.splitlines():
        match = IMPORT_RE.match(line)
        if not match:
            continue
        name = match.group(4)
        index = 0 if name.startswith("ansible.module_utils") else 1 if name.startswith("ansible_collections") else 2
        groups[index] += int(match.group(1))
    return [us / 1000.0 for us in groups]


def lines(files, prefix):
    return sum(src.count("\n") for name, src in files.items() if name.startswith(prefix))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each kept payload (default 5)")
    ap.add_argument("--module", action="append", default=[], help="only these collection modules (short names)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aa-nats-payload-") as tmp:
        kept = keep_payloads(module_names(args.module), tmp)
        empty = Path(tmp) / "empty.py"
        empty.write_text("")
        bare = run_seconds(empty, args.runs)  # the interpreter's own start, for reference
        rows = []
        for module, ansiballz in kept.items():
            files = payload_files(ansiballz)
            own = sorted(((src.count("\n"), name.rsplit("/", 1)[-1][:-3]) for name, src in files.items()
                          if "/plugins/module_utils/" in name), reverse=True)
            rows.append((module.rsplit(".", 1)[-1], len(files), lines(files, "ansible/"),
                         lines(files, "ansible_collections/"), compile_seconds(files) * 1000,
                         run_seconds(ansiballz, args.runs), import_ms(ansiballz), own))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print("per module run, before the module's work; %d CPUs, load %s; an empty Python script: %.0f ms wall, "
          "%.0f ms CPU" % (os.cpu_count() or 0, load, bare[0] * 1000, bare[1] * 1000))
    print("%-24s %5s %8s %8s %8s %7s %7s  %s" % ("module", "files", "lines:an", "lines:co", "compile", "run",
                                                 "cpu", "import ms (ansible mu / collection mu / other)"))
    for name, nfiles, core, coll, comp, run, imp, _own in sorted(rows, key=lambda r: -r[5][1]):
        print("%-24s %5d %8d %8d %6.0fms %5.0fms %5.0fms  %5.0f / %5.0f / %5.0f"
              % ((name, nfiles, core, coll, comp, run[0] * 1000, run[1] * 1000) + tuple(imp)))
    print("\ncollection module_utils in each payload (lines), largest first:")
    for name, _n, _c, coll, _comp, _run, _imp, own in rows:
        if own:
            print("  %-22s %5d: %s" % (name, coll, ", ".join("%s %d" % (mod, n) for n, mod in own)))


if __name__ == "__main__":
    main()
