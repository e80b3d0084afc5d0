#!/bin/sh
# One-shot (minio-init): the bucket, and one MinIO user per S3 identity, each with a policy that reaches only
# what it needs (issue 20, docs/security.md):
#   pipeline  (SENTIFLOW_S3_ACCESS_KEY_ID)  read/write/delete in the bucket: datasets, reports, samples
#   mlflow    (MINIO_MLFLOW_ACCESS_KEY)     read/write/delete under mlflow-artifacts/ only (MLflow's store)
#   reader    (MINIO_READER_ACCESS_KEY)     read under mlflow-artifacts/ only (a replica reading S3 directly)
# Idempotent: re-running on an existing volume changes nothing but the users' secrets.
set -eu
: "${SENTIFLOW_S3_BUCKET:?}" "${SENTIFLOW_S3_ACCESS_KEY_ID:?}" "${SENTIFLOW_S3_SECRET_ACCESS_KEY:?}"
: "${MINIO_MLFLOW_SECRET_KEY:?}" "${MINIO_READER_SECRET_KEY:?}"
# SENTIFLOW_ENV=production: no placeholder credentials (the same rule as sentiflow.credentials_check)
if [ "${SENTIFLOW_ENV:-development}" = production ]; then
  for name in MINIO_ROOT_PASSWORD SENTIFLOW_S3_SECRET_ACCESS_KEY MINIO_MLFLOW_SECRET_KEY MINIO_READER_SECRET_KEY; do
    eval "value=\${$name:-}"
    folded=$(printf '%s' "$value" | tr 'A-Z' 'a-z' | tr -d '_-')
    case "$folded" in ''|changeme*) echo "minio-init: $name is empty or a placeholder" >&2; exit 1 ;; esac
  done
fi
bucket="$SENTIFLOW_S3_BUCKET"
mc alias set sentiflow "${SENTIFLOW_S3_ENDPOINT_URL:-http://minio:9000}" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "sentiflow/${bucket}"

# policy NAME ACTIONS PREFIX: list the bucket (only PREFIX when given), ACTIONS on objects under PREFIX
policy() {
  file="/tmp/$1.json"
  if [ -n "$3" ]; then
    list="{\"Effect\": \"Allow\", \"Action\": [\"s3:ListBucket\"], \"Resource\": [\"arn:aws:s3:::${bucket}\"],
           \"Condition\": {\"StringLike\": {\"s3:prefix\": [\"$3*\"]}}}"
  else
    list="{\"Effect\": \"Allow\", \"Action\": [\"s3:ListBucket\", \"s3:ListBucketMultipartUploads\"],
           \"Resource\": [\"arn:aws:s3:::${bucket}\"]}"
  fi
  cat > "$file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::${bucket}"]},
    $list,
    {"Effect": "Allow", "Action": [$2], "Resource": ["arn:aws:s3:::${bucket}/$3*"]}
  ]
}
JSON
  mc admin policy create sentiflow "$1" "$file"
}
# user KEY SECRET POLICY
user() {
  mc admin user add sentiflow "$1" "$2"
  mc admin policy attach sentiflow "$3" --user "$1" || true  # already attached
}
write='"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"'
policy sentiflow-app "$write" ""
policy sentiflow-mlflow "$write" "mlflow-artifacts/"
policy sentiflow-reader '"s3:GetObject"' "mlflow-artifacts/"
user "$SENTIFLOW_S3_ACCESS_KEY_ID" "$SENTIFLOW_S3_SECRET_ACCESS_KEY" sentiflow-app
user "${MINIO_MLFLOW_ACCESS_KEY:-sentiflow-mlflow}" "$MINIO_MLFLOW_SECRET_KEY" sentiflow-mlflow
user "${MINIO_READER_ACCESS_KEY:-sentiflow-reader}" "$MINIO_READER_SECRET_KEY" sentiflow-reader
echo "bucket ${bucket} and users ${SENTIFLOW_S3_ACCESS_KEY_ID}, ${MINIO_MLFLOW_ACCESS_KEY:-sentiflow-mlflow}, ${MINIO_READER_ACCESS_KEY:-sentiflow-reader} ready"
