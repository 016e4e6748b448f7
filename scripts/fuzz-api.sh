#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis: every
# generated request must get an answer that is not a 5xx. Runs the real
# binary on loopback with a fresh database, once as admin and once as a user.
#
#   scripts/fuzz-api.sh [QUOTA_BINARY] [EXAMPLES_PER_OPERATION]
set -euo pipefail
cd "$(dirname "$0")/.."
quota="${1:-target/release/quota}"
examples="${2:-40}"
venv=target/fuzz-venv
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis==4.32.5
fi

work="$(mktemp -d)"
admin="fuzz-admin-$$"
QUOTA_ADMIN_TOKEN="$admin" "$quota" serve --addr 127.0.0.1:0 --db "$work/quota.db" --demo > "$work/serve.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    grep -q '^quota listening on' "$work/serve.log" && break
    sleep 0.1
done
base="$(sed -n 's/^quota listening on //p' "$work/serve.log")"
[ -n "$base" ] || { cat "$work/serve.log"; exit 1; }

user_token="$(python3 - "$base" "$admin" <<'PY'
import json, sys, urllib.request
base, admin = sys.argv[1], sys.argv[2]
req = urllib.request.Request(base + "/admin/users", method="POST",
    data=json.dumps({"id": "fuzzer", "plan_id": "pro"}).encode(),
    headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["token"])
PY
)"

status=0
for token in "$admin" "$user_token"; do
    "$venv/bin/st" run "$base/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks not_a_server_error \
        --max-examples "$examples" \
        --generation-deterministic \
        --request-timeout 10 || status=1
done
exit $status
