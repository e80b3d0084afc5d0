"""Time the README's test command (``make test``) from a clean clone, on a quiet or a busy machine.

Clones this repository's HEAD beside it (so ``../shared`` resolves as it does for CI), runs ``make test``
there, and records the wall time, pytest's passed/failed/skipped counts and its 20 slowest tests
(``--durations=20``, which ``scripts/test.sh`` asks for) in ``results/suite_time.json`` (one entry per load)
and the ``## suite_time`` section of RESULTS.md. ``--load busy`` keeps both cores taken by two spinning
processes for the whole run, the ground rule's "suite under load" run.

    .venv/bin/python benchmarks/suite_time.py --load quiet
    .venv/bin/python benchmarks/suite_time.py --load busy
    (or ``--from-log make-test.log --wall-s N --load quiet`` to record a run made by hand)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, RESULTS_DIR, git_commit, machine, record

REPO = BENCH_DIR.parent
SUMMARY = re.compile(r"^=*\s*(?P<body>.*\b(?:passed|failed|error)\b.*) in (?P<seconds>[\d.]+)s", re.M)
DURATION = re.compile(r"^(?P<seconds>[\d.]+)s (?P<phase>call|setup|teardown)\s+(?P<test>\S+)")


def spin() -> None:
    while True:
        pass


def cpu_flags() -> list[str]:
    """The instruction sets that decide which kernels run (AVX2, AVX-512, VNNI)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    flags = lines[0].split(":", 1)[1].split() if lines else []
    return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")) or "vnni" in f)


def parse(log: str) -> dict:
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    found = list(SUMMARY.finditer(log))
    summary = [m["body"] for m in found]
    if summary:
        for part in summary[-1].split(","):
            number, _, word = part.strip().partition(" ")
            key = {"error": "errors", "errors": "errors"}.get(word, word)
            if key in counts and number.isdigit():
                counts[key] = int(number)
    slowest = [
        {"seconds": float(m["seconds"]), "phase": m["phase"], "test": m["test"]}
        for m in (DURATION.match(line) for line in log.splitlines())
        if m
    ][:20]
    pytest_s = float(found[-1]["seconds"]) if found else None
    return {**counts, "pytest_s": pytest_s, "slowest": slowest}


def run_clean_clone(busy: bool) -> tuple[str, float, int, str]:
    """``make test`` in a fresh clone: its output, wall seconds, exit code and the commit it tested."""
    clone = REPO.parent / "suite-time-clone"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    tested = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout.strip()  # HEAD may move while the run lasts: the clone's commit is the one tested
    burners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(2 if busy else 0)]
    for burner in burners:
        burner.start()
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["make", "test"], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    finally:
        for burner in burners:
            burner.terminate()
    wall = time.monotonic() - started
    (RESULTS_DIR / f"suite_time_{'busy' if busy else 'quiet'}.log").write_text(proc.stdout)
    shutil.rmtree(clone, ignore_errors=True)
    return proc.stdout, wall, proc.returncode, tested


def markdown(runs: dict) -> str:
    lines = [
        "`make test` from a clean clone (lint, mypy, the whole suite), wall time from start to exit:",
        "",
        "| load | commit | wall | of which pytest | passed | failed | skipped | exit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for load, run in sorted(runs.items()):
        lines.append(
            f"| {load} | {run['commit']} | {run['wall_s'] / 60:.1f} min "
            f"| {(run.get('pytest_s') or 0) / 60:.1f} min | {run['passed']} | {run['failed']} "
            f"| {run['skipped']} | {run['exit_code']} |"
        )
    for load, run in sorted(runs.items()):
        lines += ["", f"Slowest tests ({load}, pytest's durations):", ""]
        lines += [f"- {t['seconds']:.0f} s {t['phase']} `{t['test']}`" for t in run["slowest"][:10]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", choices=["quiet", "busy"], required=True)
    parser.add_argument("--from-log", type=Path, help="record this make test log instead of running one")
    parser.add_argument("--wall-s", type=float, help="with --from-log: the run's wall seconds")
    parser.add_argument("--exit-code", type=int, default=0, help="with --from-log: make test's exit code")
    parser.add_argument("--commit", help="with --from-log: the commit that run tested (default HEAD)")
    args = parser.parse_args()
    if args.from_log:
        log, wall, code = args.from_log.read_text(errors="replace"), float(args.wall_s or 0), args.exit_code
        tested = args.commit or git_commit()
    else:
        log, wall, code, tested = run_clean_clone(args.load == "busy")
    path = RESULTS_DIR / "suite_time.json"
    runs = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
    runs[args.load] = {
        "commit": tested,
        "pytest_workers": 2,
        "load": "both cores kept busy by two spinning processes" if args.load == "busy" else "quiet",
        "loadavg_at_end": os.getloadavg()[0],
        "wall_s": round(wall, 1),
        "exit_code": code,
        "machine": machine(),
        "cpu_flags": cpu_flags(),
        **parse(log),
    }
    record("suite_time", {"runs": runs}, markdown(runs))
    print(json.dumps(runs[args.load], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
