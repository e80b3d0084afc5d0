#!/usr/bin/env bash
# Write .env from .env.example with every `change-me...` value replaced by a fresh random secret
# (the Fernet key in the form Airflow needs) and a fresh model-signing key pair. Refuses to overwrite an
# existing .env.
#   bash docker/init-env.sh [OUTPUT]     (default: .env beside docker-compose.yaml)
#
# Needs python3 (standard library only) and the openssl CLI (OpenSSL 1.1+/3 or LibreSSL): the signing key
# pair is made with openssl, not Python's `cryptography`, which the host's python3 often lacks.
#
# The key pair (ECDSA P-256, what sentiflow.security.signing signs and verifies with) goes into .env as one line
# each, since multi-line values are not portable across compose versions:
#   SENTIFLOW_SIGNING_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\n...\n"   double quotes: compose turns \n
#                                        into line breaks (docker-compose 1.29 and Compose v2 alike)
#   SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS='["-----BEGIN PUBLIC KEY-----\n..."]'   single quotes: taken
#                                        literally, a JSON list whose strings hold the PEM (the settings'
#                                        form: ServerSettings.signing_public_keys)
# docker-compose.yaml gives the private key only to the Airflow containers that run tasks and the public
# list to the model server and Airflow (docs/security.md). Environment values, not mounted files: a bind-
# mounted 0600 key file would be unreadable to the containers' own users (Airflow's AIRFLOW_UID, the
# server's 10001).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/.env}"
if [[ -e "$out" ]]; then
  echo "init-env: $out exists; remove it first to generate new secrets" >&2
  exit 1
fi
if ! command -v openssl >/dev/null 2>&1; then
  echo "init-env: the openssl command is needed to make the model-signing key pair; install it" \
    "(Debian/Ubuntu: apt-get install openssl; macOS has it) and run this again" >&2
  exit 1
fi
keys="$(mktemp -d)"  # 0700; the private key never lands anywhere else but .env (0600)
trap 'rm -rf "$keys"' EXIT
(
  umask 077
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$keys/signing-private.pem"
  openssl pkey -in "$keys/signing-private.pem" -pubout -out "$keys/signing-public.pem"
) || { echo "init-env: openssl could not make an ECDSA P-256 key pair" >&2; exit 1; }

python3 - "$root/.env.example" "$out" "$keys/signing-private.pem" "$keys/signing-public.pem" <<'PY'
import base64, json, os, secrets, sys

src, dst, private_pem, public_pem = sys.argv[1:]
private = open(private_pem, encoding="ascii").read()
public = open(public_pem, encoding="ascii").read()
generated = {
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "SENTIFLOW_SIGNING_PRIVATE_KEY": lambda: '"' + private.replace("\n", "\\n") + '"',
    "SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS": lambda: "'" + json.dumps([public]) + "'",
}
lines = []
for line in open(src, encoding="utf-8").read().splitlines():
    key, sep, value = line.partition("=")
    # a placeholder, bare or inside the quoted JSON list of .env.example ('["change-me-..."]')
    if sep and not line.lstrip().startswith("#") and value.strip("'\"[]").startswith("change-me"):
        line = f"{key}={generated.get(key, lambda: secrets.token_urlsafe(24))()}"
    lines.append(line)
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as out:
    out.write("\n".join(lines) + "\n")
print(f"init-env: wrote {dst} (mode 600), with a new model-signing key pair")
PY
