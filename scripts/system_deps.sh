#!/usr/bin/env bash
# System packages the suite needs (Debian): chromium for the browser test, docker-compose 1.29 for
# `docker-compose config`, nginx as the round-robin proxy in front of several model-server replicas
# (tests/integration/serving/test_replicas.py, benchmarks/replica_convergence.py), PostgreSQL's binaries for the
# replica store's checks on a throwaway Postgres (tests/integration/serving/test_replica_store.py starts its own
# cluster; the package's default cluster is not used), redis-server for the shared rate limit of several
# replicas (tests/integration/serving/test_rate_limit.py starts its own on a free port; the package's service is
# not used), qemu-user to run the int8 file on an emulated CPU without AVX-512
# (tests/integration/train/test_onnx_runtime.py, benchmarks/int8_isa.py). A test that needs one fails when it is missing, so this installs what is missing and exits
# non-zero when it cannot (not root, no apt-get, or the install fails); with everything present it does nothing.
set -uo pipefail
missing() {
  local need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
  command -v qemu-x86_64 >/dev/null 2>&1 || need+=(qemu-user)
  echo "${need[*]}"
}
need=$(missing)
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing system packages: $need; the tests that need them fail." >&2
  echo "Run scripts/system_deps.sh as root on Debian/Ubuntu, or install them yourself." >&2
  exit 1
fi
echo "installing system packages: $need"
# shellcheck disable=SC2086  # one word per package
if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need) \
  >/tmp/sentiflow-apt.log 2>&1; then
  echo "error: apt-get install $need failed (see /tmp/sentiflow-apt.log)" >&2
  tail -20 /tmp/sentiflow-apt.log >&2
  exit 1
fi
still=$(missing)
if [ -n "$still" ]; then
  echo "error: still missing after apt-get install: $still" >&2
  exit 1
fi
