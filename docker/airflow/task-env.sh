# Sourced by entrypoint.sh (and the tests): Kubernetes task pods get the pipeline's credentials as the files
# of a Secret that only those pods mount (k8s/airflow-values.yaml), one file per variable, named as the
# variable; each is exported here before anything reads it. Elsewhere the folder does not exist: nothing.
task_env_dir="${SENTIFLOW_TASK_ENV_DIR:-/etc/sentiflow/task-env}"
if [[ -d "$task_env_dir" ]]; then
  for task_env_file in "$task_env_dir"/*; do
    [[ -f "$task_env_file" ]] || continue
    task_env_name="$(basename "$task_env_file")"
    [[ "$task_env_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    export "$task_env_name=$(cat "$task_env_file")"
  done
  unset task_env_file task_env_name
fi
unset task_env_dir
