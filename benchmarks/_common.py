"""Helpers shared by the benchmark scripts: machine description and result recording."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"


def machine() -> dict[str, object]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        found = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        if found:
            mem_gib = round(int(found.group(1)) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def cpu_flags() -> list[str]:
    """The CPU's feature flags (``/proc/cpuinfo``), empty where they cannot be read."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return line.split(":", 1)[1].split()


#: The flags that decide which int8 kernels ONNX Runtime runs on an x86 CPU.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def int8_cpu_flags() -> list[str]:
    """Which of ``INT8_FLAGS`` this CPU has."""
    return [f for f in INT8_FLAGS if f in cpu_flags()]


def command_line() -> str:
    return " ".join(
        [".venv/bin/python", *[os.path.relpath(sys.argv[0]) if i == 0 else a for i, a in enumerate(sys.argv)]]
    )


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH_DIR, check=True
        ).stdout.strip()
    except Exception:
        return "unknown"


def record(name: str, result: dict, markdown: str, command: str | None = None) -> None:
    """Write results/<name>.json and replace the ``## <name>`` section of RESULTS.md."""
    RESULTS_DIR.mkdir(exist_ok=True)
    payload = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or command_line(),
        "machine": machine(),
        "git_commit": git_commit(),
        **result,
    }
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    header = f"## {name}"
    section = (
        f"{header}\n\n- command: `{payload['command']}`\n- date: {payload['date']}\n"
        f"- machine: {payload['machine']['cpu']}, {payload['machine']['cores']} cores, "
        f"{payload['machine']['memory_gib']} GiB, Python {payload['machine']['python']}\n"
        f"- commit: {payload['git_commit']}\n\n{markdown.strip()}\n"
    )
    text = (
        RESULTS_MD.read_text()
        if RESULTS_MD.exists()
        else "# Benchmark results\n\nNewest run of each benchmark; raw numbers in `results/*.json`.\n"
    )
    pattern = re.compile(rf"^{re.escape(header)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS_MD.write_text(text)
