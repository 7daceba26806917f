#!/usr/bin/env python3
"""`make test`: every test under tests/, in two pytest runs at the same time, each with a lab of its own.

Most of the suite's time is spent waiting (soak windows, drains, leader elections, services restarting), not
computing: one pytest run kept two cores busy about 40 % of the time. So the tests are split in two groups:

  lab     the GROUP_LAB paths below (the lab's tests and its tooling's), on the default lab (inventories/lab, .lab/);
  rest    everything else under tests/, on a second lab with every port shifted by PRIVATE_LAB_OFFSET
          (lab/private_lab.py), so both can bring labs up and down without touching each other.

Each line of output is prefixed with its group; the exit status is 0 only if both runs pass. A failing group's
FAILED/ERROR summary lines are printed again at the very end: CI logs are often read from their tail, and the
other group's durations would otherwise bury them. Extra arguments go
to both pytest runs (e.g. `-x`, `-k name`). Run one group alone: `tests/run_suites.py --only lab`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lab import private_lab  # noqa: E402

# Balanced by the durations pytest prints (about the same wall time each); a path not listed runs in "rest".
# tests/lab_tooling (the lab's and the benchmarks' own code, about 25 s, no lab) goes with the lab's tests.
GROUP_LAB = ["tests/lab", "tests/lab_tooling", "tests/test_molecule.py"]
PRIVATE_LAB_OFFSET = 500


def commands(extra):
    pytest = [str(REPO / ".venv" / "bin" / "pytest"), "-p", "no:cacheprovider"] + list(extra)
    rest_env = dict(os.environ, **private_lab.write(REPO / ".lab-private" / str(PRIVATE_LAB_OFFSET),
                                                    PRIVATE_LAB_OFFSET))
    lab_env = {k: v for k, v in os.environ.items() if k not in ("ANSIBLE_INVENTORY", "AA_LAB_INVENTORY", "AA_LAB_DIR")}
    ignore = ["--ignore=%s" % path for path in GROUP_LAB]
    return {"lab": (pytest + GROUP_LAB, lab_env), "rest": (pytest + ignore + ["tests"], rest_env)}


def run(name, argv, env, results):
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    summary = []
    for line in proc.stdout:
        sys.stdout.write("[%s] %s" % (name, line))
        sys.stdout.flush()
        if line.startswith(("FAILED ", "ERROR ")):
            summary.append(line.rstrip("\n"))
    results[name] = (proc.wait(), time.monotonic() - started, summary)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["lab", "rest"], help="run one group")
    args, extra = ap.parse_known_args(argv)
    results = {}
    threads = [threading.Thread(target=run, args=(name, argv_, env, results))
               for name, (argv_, env) in commands(extra).items() if args.only in (None, name)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # pytest's 5 is "no test selected": fine when the extra arguments filtered a whole group away.
    passing = (0, 5) if extra else (0,)
    for name, (rc, _seconds, summary) in sorted(results.items()):
        for line in summary if rc not in passing else ():
            print("[%s] %s" % (name, line))
    for name, (rc, seconds, _summary) in sorted(results.items()):
        verdict = "passed" if rc in passing else "FAILED (rc %d)" % rc
        print("%-5s %s in %d min %02d s" % (name, verdict, seconds // 60, seconds % 60))
    return 0 if results and all(result[0] in passing for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
