#!/usr/bin/env bash
# Load test of the HTTP service on loopback with wrk: guarded POST /v1/drafts
# (a user on the unlimited demo plan, so every create is admitted and
# committed before its response) beside GET /healthz, on the same server in
# one run. Bounded: each load runs DURATION seconds.
#
#   scripts/bench-http.sh [QUOTA_BINARY] [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
quota="${1:-target/release/quota}"
duration="${2:-10}"
connections="${3:-32}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

. scripts/serve-lib.sh
start_server "$quota" "bench-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
token="$(create_user bench enterprise)"
post_lua "$token"

echo "== GET /healthz"
wrk -t1 -c"$connections" -d"${duration}s" --latency "$base/healthz" | grep -E "Requests/sec|99%|Non-2xx|Socket errors"
echo "== POST /v1/drafts (guarded create)"
wrk -t1 -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "$base/v1/drafts" | grep -E "Requests/sec|99%|Non-2xx|Socket errors"
