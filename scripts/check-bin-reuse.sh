#!/usr/bin/env bash
# Run after the test build (`make test` does): building the `quota` binary
# alone, as `make run` does, must compile nothing that build did not. If it
# does, the binary alone resolves other features than the tests (cargo then
# compiles wasmtime and the rest a second time): ask for the missing
# features in crates/workspace-hack.
set -euo pipefail
cd "$(dirname "$0")/.."
compiled="$(cargo build --release --locked -p quota-cli --message-format=json \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and not m.get("fresh"):
        print(m["package_id"])')"
if [ -n "$compiled" ]; then
    echo "building the quota binary alone compiled again:" >&2
    echo "$compiled" >&2
    echo "see crates/workspace-hack" >&2
    exit 1
fi
echo "the quota binary alone reuses the test build"
