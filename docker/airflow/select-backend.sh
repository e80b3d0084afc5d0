# Sourced by entrypoint.sh (and the tests): choose where training runs, unless the user already chose.
# Kubernetes when a kubeconfig is mounted at $KUBECONFIG_MOUNT (or Airflow itself runs in a cluster),
# local otherwise. Exports SENTIFLOW_PIPELINE_TRAIN_BACKEND and, for a mounted kubeconfig, KUBECONFIG.
KUBECONFIG_MOUNT=${KUBECONFIG_MOUNT:-/opt/airflow/kube/config}
if [[ -z "${SENTIFLOW_PIPELINE_TRAIN_BACKEND:-}" ]]; then
  if [[ -f "$KUBECONFIG_MOUNT" ]]; then
    export KUBECONFIG="$KUBECONFIG_MOUNT" SENTIFLOW_PIPELINE_TRAIN_BACKEND=kubernetes
  elif [[ -n "${KUBERNETES_SERVICE_HOST:-}" ]]; then
    export SENTIFLOW_PIPELINE_TRAIN_BACKEND=kubernetes
  else
    export SENTIFLOW_PIPELINE_TRAIN_BACKEND=local
  fi
fi
