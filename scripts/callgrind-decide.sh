#!/usr/bin/env bash
# Instructions per decision, counted by callgrind, which the noise of a shared
# machine does not move: runs rows of the decision bench (`decision/wasm`, or
# `decision/wasm_<name>` for a component listed in QUOTA_BENCH_COMPONENTS)
# under callgrind for a few seconds each, and divides the instructions spent
# inside `Evaluator::decide` (host and guest code) by its calls.
#
#   scripts/callgrind-decide.sh BENCH_ID... [-- SECONDS]
#   QUOTA_BENCH_COMPONENTS=old.wasm scripts/callgrind-decide.sh decision/wasm decision/wasm_old
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=3
ids=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) seconds="${2:?seconds after --}"; shift 2 ;;
    *) ids+=("$1"); shift ;;
  esac
done
[ ${#ids[@]} -gt 0 ] || { echo "usage: $0 BENCH_ID... [-- SECONDS]" >&2; exit 2; }
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }

bench="$(cargo bench --locked -p quota-benches --bench decision --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m.get("target", {}).get("name") == "decision":
        print(m["executable"])')"
[ -n "$bench" ] || { echo "cannot build the decision bench" >&2; exit 1; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for id in "${ids[@]}"; do
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" --collect-atstart=no \
    --toggle-collect='*Bencher*iter*' "$bench" --bench "^$id\$" --profile-time "$seconds" \
    >/dev/null 2>"$out/log" || { cat "$out/log" >&2; exit 1; }
  python3 - "$out/cg" "$id" <<'PY'
import re, sys
names, calls, cost, callee = {}, 0, 0, None
lines = open(sys.argv[1]).read().splitlines()
for i, line in enumerate(lines):
    m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3)
        callee = names.get(m.group(2), "") if m.group(1) == "cfn" else None
        continue
    if line.startswith("calls=") and callee and "Evaluator" in callee and "decide" in callee:
        calls += int(line.split("=")[1].split()[0])
        cost += int(lines[i + 1].split()[1])
        callee = None
if not calls:
    sys.exit(f"{sys.argv[2]}: no call of Evaluator::decide was recorded")
print(f"{sys.argv[2]}: {calls} decisions, {cost / calls:,.0f} instructions per decision")
PY
done
