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

work="$(mktemp -d)"
admin="bench-admin-$$"
QUOTA_ADMIN_TOKEN="$admin" "$quota" serve --addr 127.0.0.1:0 --db "$work/quota.db" --demo > "$work/serve.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    grep -q '^quota listening on' "$work/serve.log" && break
    sleep 0.1
done
base="$(sed -n 's/^quota listening on //p' "$work/serve.log")"
token="$(python3 - "$base" "$admin" <<'PY'
import json, sys, urllib.request
base, admin = sys.argv[1], sys.argv[2]
req = urllib.request.Request(base + "/admin/users", method="POST",
    data=json.dumps({"id": "bench", "plan_id": "enterprise"}).encode(),
    headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["token"])
PY
)"
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"title":"bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA

echo "== GET /healthz"
wrk -t1 -c"$connections" -d"${duration}s" --latency "$base/healthz" | grep -E "Requests/sec|99%|Non-2xx|Socket errors"
echo "== POST /v1/drafts (guarded create)"
wrk -t1 -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "$base/v1/drafts" | grep -E "Requests/sec|99%|Non-2xx|Socket errors"
