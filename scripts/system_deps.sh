#!/usr/bin/env bash
# System packages some tests need (Debian): chromium for the browser test, docker-compose 1.29 for
# `docker-compose config`, nginx as the round-robin proxy in front of several model-server replicas
# (tests/integration/serving/test_replicas.py, benchmarks/replica_convergence.py), PostgreSQL's binaries for the replica store's
# checks on a throwaway Postgres (tests/integration/serving/test_replica_store.py starts its own cluster; the package's default
# cluster is not used), redis-server for the shared rate limit of several replicas (tests/integration/serving/test_rate_limit.py
# starts its own on a free port; the package's service is not used). Installed only when missing; skipped
# when not root or apt is unavailable.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") \
    >/tmp/sentiflow-apt.log 2>&1 || echo "warning: apt-get install ${need[*]} failed (see /tmp/sentiflow-apt.log)"
else
  echo "warning: missing ${need[*]}; the tests that need them will be skipped"
fi
exit 0
