#!/bin/sh
# One-shot (minio-init): the bucket, and an application user whose policy reaches only that bucket.
# Idempotent: re-running on an existing volume changes nothing but the user's secret.
set -eu
: "${SENTIFLOW_S3_BUCKET:?}" "${SENTIFLOW_S3_ACCESS_KEY_ID:?}" "${SENTIFLOW_S3_SECRET_ACCESS_KEY:?}"
mc alias set sentiflow "${SENTIFLOW_S3_ENDPOINT_URL:-http://minio:9000}" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "sentiflow/${SENTIFLOW_S3_BUCKET}"
policy=/tmp/sentiflow-bucket-policy.json
cat > "$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::${SENTIFLOW_S3_BUCKET}"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                                   "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::${SENTIFLOW_S3_BUCKET}/*"]}
  ]
}
JSON
mc admin policy create sentiflow sentiflow-app "$policy"
mc admin user add sentiflow "$SENTIFLOW_S3_ACCESS_KEY_ID" "$SENTIFLOW_S3_SECRET_ACCESS_KEY"
mc admin policy attach sentiflow sentiflow-app --user "$SENTIFLOW_S3_ACCESS_KEY_ID" || true  # already attached
echo "bucket ${SENTIFLOW_S3_BUCKET} and user ${SENTIFLOW_S3_ACCESS_KEY_ID} ready"
