#!/usr/bin/env bash
# Time the README's main command cold: a fresh sibling clone (so ../shared resolves), no venv, `make demo`
# (install included), then record benchmarks/results/demo.json and the demo section of RESULTS.md here.
# Run from the repo root: bash benchmarks/demo_cold.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLONE="$(dirname "$ROOT")/sentiflow-demo-cold"
rm -rf "$CLONE" && git clone -q "$ROOT" "$CLONE"
start=$(date +%s)
rc=0
(cd "$CLONE" && make demo) > /tmp/sentiflow-demo-cold.log 2>&1 || rc=$?
wall=$(( $(date +%s) - start ))
(cd "$CLONE" && make down) >/dev/null 2>&1 || true
"$ROOT/.venv/bin/python" "$ROOT/benchmarks/record_demo.py" --wall-s "$wall" --rc "$rc" \
  --log /tmp/sentiflow-demo-cold.log --command "git clone . ../sentiflow-demo-cold && cd ../sentiflow-demo-cold && time make demo"
rm -rf "$CLONE"
