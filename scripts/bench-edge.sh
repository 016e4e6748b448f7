#!/usr/bin/env bash
# The policy in Node beside native Rust and wasmtime, in one run
# (BENCHMARKS.md, "The policy in Node"): the Rust decision benchmark's
# `native` and `wasm` rows (criterion), then edge/bench.mjs on the same 64
# inputs; ratios to `wasm` at the end.
#
#   scripts/bench-edge.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
QUOTA_BENCH_DUMP_INPUTS="$work/inputs.jsonl" cargo bench --locked -q -p quota-benches --bench decision >/dev/null
cargo bench --locked -q -p quota-benches --bench decision -- --warm-up-time 2 --measurement-time "$seconds" '^decision/(native|wasm)$' |
    tee "$work/rust.txt" | grep -E '^decision/|time:' || true
node edge/bench.mjs "$work/inputs.jsonl" "$seconds" | tee "$work/node.txt"
python3 - "$work/rust.txt" "$work/node.txt" <<'PY'
import re, sys
rust = open(sys.argv[1]).read()
unit = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6}
rows = {}
for name, mid, u in re.findall(r"decision/(\w+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", rust):
    rows[name] = float(mid) * unit[u]
for line in open(sys.argv[2]):
    name, ns = line.split("\t")[:2]
    rows[name] = float(ns.split()[0])
wasm = rows.get("wasm")
print("\nper decision (ratio to wasm):")
for name, ns in rows.items():
    print(f"  {name:<16} {ns:>10.1f} ns  {1e9 / ns:>14,.0f}/s  {ns / wasm:>6.2f}x" if wasm else f"  {name} {ns} ns")
PY
