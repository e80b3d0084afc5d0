#!/usr/bin/env bash
# The README's test command: lint, then the whole suite (unit, integration against real local services,
# end to end). Tests start and stop the services they need themselves (on free ports, by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -f "$VENV/.installed" ] || { bash scripts/install.sh "$VENV" && touch "$VENV/.installed"; }
bash scripts/system_deps.sh
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
# The benchmarks are scripts (no package, untyped helpers): checked so a change to the library's signatures
# cannot leave one of them broken until its next run.
"$VENV/bin/mypy" --no-explicit-package-bases --allow-untyped-defs --cache-dir .mypy_cache/benchmarks benchmarks/*.py
# The project's own modules as .pyc too (the venv's are compiled at install): every child process of the suite
# imports them, and under PYTHONDONTWRITEBYTECODE each would compile them again.
"$VENV/bin/python" -m compileall -q -j 0 include serving dags plugins tests >/dev/null
# Two workers (pytest-xdist): most of a test's time is spent waiting on a service, so two share the cores
# well. A module stays on one worker, in file order; tests/conftest.py keeps files that read one shared run
# together. SENTIFLOW_TEST_WORKERS=0 runs the suite in this process.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=20 \
    -n "${SENTIFLOW_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
