#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis: every
# generated request must get an answer that is not a 5xx, whose status the
# document lists (or its `default`), whose content type it names, and whose
# body conforms to the schema it gives for that status. Runs the real binary
# on loopback with a fresh database, as admin, as a user and as a node.
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

. scripts/serve-lib.sh
start_server "$quota" "fuzz-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
user_token="$(create_user fuzzer pro)"
node_token="$(create_node fuzz-node 1000)"

status=0
for token in "$admin" "$user_token" "$node_token"; do
    "$venv/bin/st" run "$base/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-examples "$examples" \
        --generation-deterministic \
        --request-timeout 10 || status=1
done
exit $status
