#!/usr/bin/env bash
# The GPU training pod's work, on a machine with a GPU and no network: what KubernetesPodOperator runs
# (`python -m sentiflow.train --manifest-uri … --family transformer --params-json …`, the pod's env, the
# XCom file in /airflow/xcom), against an MLflow server started here (SQLite, proxied local artifacts).
#
#   benchmarks/gpu_pod_run.sh install   # wheels from .gpu/whl into $SITE (python3 must hold torch)
#   benchmarks/gpu_pod_run.sh train     # one run (PARAMS_JSON; default: the gpu_weekly preset)
#   benchmarks/gpu_pod_run.sh compare   # the recorded comparison: the gpu_weekly preset, then the tutorial set-up
#                                       # on the same GPU, side by side → $OUT/gpu_pod_run.json
#
# Inputs come from benchmarks/gpu_pod_prepare.py (.gpu/data, .gpu/model, .gpu/whl; `.gpu/` must be in
# .git/info/exclude and carried). Where one transfer cannot carry all of them, `install` (with .gpu/whl and
# .gpu/data) and `train`/`compare` (with .gpu/model) run as two calls. Results land under $OUT (or
# ./.gpu/out); copy $OUT/gpu_pod_run.json to benchmarks/results/gpu_pod_run.json here afterwards.
# PARAMS_JSON overrides the preset run's parameters; TUTORIAL_EPOCHS (default 1) the tutorial's epochs (its
# per-epoch figures are what the ratio compares; 3 epochs of it would not fit the device's 10-minute call).
# Both runs sample the GPU through NVML (sentiflow.train.gpu_monitor) for the whole fit. TUTORIAL_ARGS adds
# arguments to gpu_tutorial.py (e.g. "--smoke 64" for a CPU check of this script).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MODE=${1:-compare}
# Outside the repo: a working-tree sync between two calls may prune ignored folders inside it.
SITE=${SITE:-/tmp/sentiflow-gpu-site}
DATA_KEEP=/tmp/sentiflow-gpu-data
OUT=${OUT:-$PWD/.gpu/out}
mkdir -p "$OUT"

if [ "$MODE" = install ]; then
  rm -rf "$DATA_KEEP" && cp -r .gpu/data "$DATA_KEEP"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl/*.whl
  PYTHONPATH=$SITE:$PWD/include "$PY" -c "import mlflow, datasets, pynvml, sentiflow.train, torch; print('mlflow', mlflow.__version__, 'datasets', datasets.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  exit 0
fi

[ -f .gpu/data/manifest.json ] || { rm -rf .gpu/data && cp -r "$DATA_KEEP" .gpu/data; }
[ -f "$SITE/mlflow/__main__.py" ] || { echo "MISSING: $SITE (run '$0 install' first on this machine)"; exit 3; }
export PYTHONPATH=$SITE:$PWD/include PATH=$SITE/bin:$PATH PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
PORT=${MLFLOW_PORT:-5055}
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$PY" -m mlflow server --host 127.0.0.1 --port "$PORT" --workers 1 \
  --backend-store-uri "sqlite:///$WORK/mlflow.db" --artifacts-destination "$WORK/artifacts" \
  >"$OUT/mlflow.log" 2>&1 &
echo $! >"$WORK/mlflow.pid"
trap 'kill "$(cat "$WORK/mlflow.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.5; done

# The pod's environment (sentiflow.orchestration.pod.pod_env_templates, rendered).
export SENTIFLOW_MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT
export HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 SENTIFLOW_TRAIN_XCOM_DIR=/airflow/xcom
mkdir -p /airflow/xcom 2>/dev/null || export SENTIFLOW_TRAIN_XCOM_DIR=$WORK/xcom && mkdir -p "$SENTIFLOW_TRAIN_XCOM_DIR"
MANIFEST=${MANIFEST:-.gpu/data/manifest.json}

# 1. The weekly GPU configuration, through the entrypoint the pod runs (it samples NVML itself).
PARAMS_JSON=${PARAMS_JSON:-'{"model_name": ".gpu/model", "preset": "gpu_weekly"}'}
START=$(date +%s.%N)
set +e
"$PY" -m sentiflow.train --manifest-uri "$MANIFEST" --family transformer \
  --params-json "$PARAMS_JSON" --output-json "$OUT/result.json" 2>&1 | tee "$OUT/train.log"
RC=${PIPESTATUS[0]}
set -e
END=$(date +%s.%N)

# 2. The tutorial set-up on the same GPU, same snapshot, same max_length.
TUTORIAL_RC=skipped
if [ "$MODE" = compare ] && [ "$RC" = 0 ]; then
  MAX_LENGTH=$("$PY" -c "import json,sys; sys.path.insert(0,'include'); from sentiflow.families.transformer.params import TrainParams; print(TrainParams.model_validate(json.loads(sys.argv[1])).max_length)" "$PARAMS_JSON")
  set +e
  "$PY" benchmarks/gpu_tutorial.py --manifest "$MANIFEST" --model .gpu/model --max-length "$MAX_LENGTH" \
    --epochs "${TUTORIAL_EPOCHS:-1}" --output "$OUT/tutorial.json" ${TUTORIAL_ARGS:-} 2>&1 | tee "$OUT/tutorial.log"
  TUTORIAL_RC=${PIPESTATUS[0]}
  set -e
fi

"$PY" - "$OUT" "$RC" "$START" "$END" "$PARAMS_JSON" "$SENTIFLOW_TRAIN_XCOM_DIR" "$TUTORIAL_RC" <<'EOF'
import json, platform, sys
from datetime import UTC, datetime
from pathlib import Path
import torch
from sentiflow.families.transformer.params import TrainParams
out, rc, start, end, params, xcom, tutorial_rc = sys.argv[1:]
out = Path(out)
result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else None
metrics = (result or {}).get("metrics", {})
tutorial = json.loads((out / "tutorial.json").read_text()) if (out / "tutorial.json").exists() else None
summary = {
    "date": datetime.now(UTC).isoformat(timespec="seconds"),
    "exit_code": int(rc),
    "wall_s": round(float(end) - float(start), 1),
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "torch": torch.__version__,
    "python": platform.python_version(),
    "params": json.loads(params),
    "params_resolved": TrainParams.model_validate(json.loads(params)).model_dump(),
    "xcom_return_json": (Path(xcom) / "return.json").exists(),
    # the preset run's own NVML figures (sentiflow.train.gpu_monitor, sampled through the fit)
    "gpu_utilization_mean_pct": metrics.get("gpu_utilization_mean_pct"),
    "gpu_memory_used_peak_mib": metrics.get("gpu_memory_used_peak_mib"),
    "epoch_time_s": metrics.get("epoch_time_s"),
    "train_samples_per_s": metrics.get("train_samples_per_s"),
    "result": result,
    "tutorial_exit_code": tutorial_rc,
    "tutorial": tutorial,
}
if tutorial and metrics.get("train_samples_per_s") and tutorial.get("train_samples_per_s"):
    summary["ratio_samples_per_s"] = round(metrics["train_samples_per_s"] / tutorial["train_samples_per_s"], 2)
if tutorial and metrics.get("epoch_time_s") and tutorial.get("epoch_time_s"):
    summary["ratio_epoch_time"] = round(tutorial["epoch_time_s"] / metrics["epoch_time_s"], 2)
(out / "gpu_pod_run.json").write_text(json.dumps(summary, indent=2))
print(json.dumps({k: v for k, v in summary.items() if k not in ("result", "params_resolved")}, indent=2))
print("test_accuracy:", metrics.get("test_accuracy"), "goal >= 0.92;", "GPU utilisation:",
      metrics.get("gpu_utilization_mean_pct"), "goal >= 60")
EOF
exit "$RC"
