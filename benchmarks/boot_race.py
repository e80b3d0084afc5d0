"""Boot races at full count: the suite's race tests run at the smallest count that still catches their bug;
this runs them as many times as they were written for and records whether every round passed.

- ``migrations``: ``tests/integration/serving/test_migrations.py``, replicas of gunicorn workers started at
  the same instant against a fresh Postgres, each replica running its own migration step as it starts
  (k8s: one ``migrate`` init container per pod). Full count: 10 rounds x 3 replicas x 2 workers.
- ``state-folder``: ``tests/integration/serving/test_server_boot.py``, processes opening one fresh state
  folder at the same instant (25 rounds x 6), then 20 real gunicorn boots on fresh state folders while
  every core is busy.

Each runs in pytest (its own S3 + MLflow and Postgres on free ports), with the counts given by the
environment variables the tests read. Wall seconds, outcome and the tail of a failure are recorded in
``results/boot_race.json`` and RESULTS.md.

    .venv/bin/python benchmarks/boot_race.py
    .venv/bin/python benchmarks/boot_race.py --only migrations
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, record

REPO = Path(__file__).resolve().parents[1]

RACES = {
    "migrations": (
        "tests/integration/serving/test_migrations.py::test_replicas_of_workers_boot_together_on_a_fresh_postgres",
        {
            "SENTIFLOW_BOOT_RACE_ROUNDS": "10",
            "SENTIFLOW_BOOT_RACE_REPLICAS": "3",
            "SENTIFLOW_BOOT_RACE_WORKERS": "2",
        },
        "10 rounds x 3 replicas x 2 workers",
    ),
    "state-folder": (
        "tests/integration/serving/test_server_boot.py",
        {"SENTIFLOW_BOOT_RACE_STATE_ROUNDS": "25", "SENTIFLOW_BOOT_RACE_SERVER_BOOTS": "20"},
        "25 rounds x 6 processes, 20 gunicorn boots on busy cores",
    ),
}


def run(name: str) -> dict:
    target, counts, described = RACES[name]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
        cwd=REPO,
        env={**os.environ, **counts},
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    last = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"{name}: {described}: exit {done.returncode} in {wall:.0f} s: {last}", flush=True)
    return {
        "target": target,
        "counts": counts,
        "described": described,
        "passed": done.returncode == 0,
        "wall_s": round(wall, 1),
        "summary": last,
        "failure_tail": "" if done.returncode == 0 else done.stdout[-4000:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(RACES), action="append")
    args = parser.parse_args()
    results = {name: run(name) for name in (args.only or RACES)}
    rows = "\n".join(
        f"| {name} | {r['described']} | {'pass' if r['passed'] else 'FAIL'} | {r['wall_s']:.0f} "
        f"| {r['summary']} |"
        for name, r in results.items()
    )
    flags = " ".join(f for f in cpu_flags() if f.startswith(("avx", "amx", "sse4")))
    markdown = (
        f"CPU flags: {flags or 'unknown'}.\n\n"
        "| race | full count | outcome | wall (s) | pytest |\n| --- | --- | --- | ---: | --- |\n"
        f"{rows}\n\nThe suite runs the boot test once (1 round of 2 replicas x 2 workers); the migration "
        "lock's race itself is shown by the four migration runs started together (see the test module's "
        "docstring)."
    )
    record("boot_race", {"cpu_flags": flags, "races": results}, markdown)
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
