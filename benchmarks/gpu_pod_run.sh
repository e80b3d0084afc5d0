#!/usr/bin/env bash
# The GPU training pod's work, on a machine with a GPU and no network: what KubernetesPodOperator runs
# (`python -m sentiflow.train --manifest-uri … --family transformer --params-json …`, the pod's env, the
# XCom file in /airflow/xcom), against an MLflow server started here (SQLite, proxied local artifacts).
#
#   benchmarks/gpu_pod_run.sh install   # wheels from .gpu/whl into .gpu/site (python3 must hold torch)
#   benchmarks/gpu_pod_run.sh train     # one run; results under $OUT (or ./.gpu/out)
#
# Inputs come from benchmarks/gpu_pod_prepare.py (.gpu/data, .gpu/model); where one transfer cannot carry
# all of them, `install` (with .gpu/whl and .gpu/data) and `train` (with .gpu/model) run as two calls.
# PARAMS_JSON overrides the training parameters; EPOCHS (default 2) sets num_train_epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Outside the repo: a working-tree sync between two calls may prune ignored folders inside it.
SITE=${SITE:-/tmp/sentiflow-gpu-site}
DATA_KEEP=/tmp/sentiflow-gpu-data
OUT=${OUT:-$PWD/.gpu/out}
mkdir -p "$OUT"

if [ "${1:-}" = install ]; then
  rm -rf "$DATA_KEEP" && cp -r .gpu/data "$DATA_KEEP"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl/*.whl
  PYTHONPATH=$SITE:$PWD/include "$PY" -c "import mlflow, sentiflow.train, torch; print('mlflow', mlflow.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  exit 0
fi

[ -f .gpu/data/manifest.json ] || { rm -rf .gpu/data && cp -r "$DATA_KEEP" .gpu/data; }
[ -f "$SITE/mlflow/__main__.py" ] || { echo "MISSING: $SITE (run '$0 install' first on this machine)"; exit 3; }
export PYTHONPATH=$SITE:$PWD/include PATH=$SITE/bin:$PATH
WORK=$(mktemp -d)
PORT=${MLFLOW_PORT:-5055}
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$PY" -m mlflow server --host 127.0.0.1 --port "$PORT" --workers 1 \
  --backend-store-uri "sqlite:///$WORK/mlflow.db" --artifacts-destination "$WORK/artifacts" \
  >"$OUT/mlflow.log" 2>&1 &
echo $! >"$WORK/mlflow.pid"
trap 'kill "$(cat "$WORK/mlflow.pid")" 2>/dev/null || true; kill "${SMI:-0}" 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.5; done

# The pod's environment (sentiflow.orchestration.pod.pod_env_templates, rendered).
export SENTIFLOW_MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT
export HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 SENTIFLOW_TRAIN_XCOM_DIR=/airflow/xcom
mkdir -p /airflow/xcom 2>/dev/null || export SENTIFLOW_TRAIN_XCOM_DIR=$WORK/xcom && mkdir -p "$SENTIFLOW_TRAIN_XCOM_DIR"

PARAMS_JSON=${PARAMS_JSON:-"{\"model_name\": \".gpu/model\", \"num_train_epochs\": ${EPOCHS:-2}, \"per_device_train_batch_size\": 32, \"per_device_eval_batch_size\": 256, \"max_length\": 256, \"early_stopping_patience\": null}"}
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader -lms 500 >"$OUT/smi.csv" 2>/dev/null &
SMI=$!
START=$(date +%s.%N)
set +e
"$PY" -m sentiflow.train --manifest-uri "${MANIFEST:-.gpu/data/manifest.json}" --family transformer \
  --params-json "$PARAMS_JSON" --output-json "$OUT/result.json" 2>&1 | tee "$OUT/train.log"
RC=${PIPESTATUS[0]}
set -e
END=$(date +%s.%N)
kill "$SMI" 2>/dev/null || true
"$PY" - "$OUT" "$RC" "$START" "$END" "$PARAMS_JSON" "$SENTIFLOW_TRAIN_XCOM_DIR" <<'EOF'
import csv, json, sys, platform
from pathlib import Path
import torch
out, rc, start, end, params, xcom = sys.argv[1:]
out = Path(out)
result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else None
rows = [r for r in csv.reader(open(out / "smi.csv")) if len(r) == 3] if (out / "smi.csv").exists() else []
mem = [float(r[1].split()[0]) for r in rows if r[1].strip().split()[0].replace(".", "").isdigit()]
util = [float(r[2].split()[0]) for r in rows if r[2].strip().split()[0].isdigit()]
summary = {
    "exit_code": int(rc),
    "wall_s": round(float(end) - float(start), 1),
    "gpu": rows[0][0].strip() if rows else (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None),
    "torch": torch.__version__,
    "python": platform.python_version(),
    "params": json.loads(params),
    "xcom_return_json": (Path(xcom) / "return.json").exists(),
    "gpu_memory_used_peak_mib": max(mem) if mem else None,
    "gpu_utilization_mean_pct": round(sum(util) / len(util), 1) if util else None,
    "result": result,
}
(out / "gpu_pod_run.json").write_text(json.dumps(summary, indent=2))
print(json.dumps({k: v for k, v in summary.items() if k != "result"}, indent=2))
print(json.dumps((result or {}).get("metrics", {}), indent=2))
EOF
exit "$RC"
