#!/usr/bin/env bash
# Write .env from .env.example with every `change-me...` value replaced by a fresh random secret
# (the Fernet key in the form Airflow needs). Refuses to overwrite an existing .env.
#   bash docker/init-env.sh [OUTPUT]     (default: .env beside docker-compose.yaml)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/.env}"
if [[ -e "$out" ]]; then
  echo "init-env: $out exists; remove it first to generate new secrets" >&2
  exit 1
fi
python3 - "$root/.env.example" "$out" <<'PY'
import base64, os, re, secrets, sys

src, dst = sys.argv[1], sys.argv[2]
lines = []
for line in open(src, encoding="utf-8").read().splitlines():
    key, sep, value = line.partition("=")
    if sep and not line.lstrip().startswith("#") and value.startswith("change-me"):
        if key == "AIRFLOW_FERNET_KEY":
            value = base64.urlsafe_b64encode(os.urandom(32)).decode()
        else:
            value = secrets.token_urlsafe(24)
        line = f"{key}={value}"
    lines.append(line)
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as out:
    out.write("\n".join(lines) + "\n")
print(f"init-env: wrote {dst} (mode 600)")
PY
