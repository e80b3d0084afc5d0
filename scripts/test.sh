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
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=20 "$@"
