#!/usr/bin/env bash
# Policy swaps under load, on loopback with wrk, one server in one run:
#
#   (a) steady: guarded POST /v1/drafts (a user on the unlimited demo plan, so
#       every create is admitted and committed) for DURATION seconds;
#   (b) swapping: the same load again while the reference policy and the
#       percent-grace example are uploaded alternately to POST /admin/policy
#       every 250 ms (percent-grace first: the reference is active at start);
#   (c) steady again, as (a): a check on drift and noise between (a) and (b).
#
# The decision log keeps up to 10 million entries here, so that it is pruned
# in none of the phases (past its default 100,000 entries it prunes every
# second, which would load (b) and (c) but not (a)).
#
# Prints req/s, p99 and non-2xx for each phase, every activation (cache hit
# or miss, the server's upload-to-active time `total_ms` and the client's
# round trip), and the ratios BENCHMARKS.md reports. Fails if a create got a
# non-2xx answer or a socket error, or an upload was refused. Bounded: each
# load runs DURATION seconds.
#
#   scripts/bench-swap.sh [QUOTA_BINARY] [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
quota="${1:-target/release/quota}"
duration="${2:-10}"
connections="${3:-32}"
reference=target/guest/reference-policy.wasm
grace=target/guest/percent-grace.wasm
for f in "$reference" "$grace"; do
    [ -f "$f" ] || { echo "missing $f: cargo build --release --locked -p quota-cli -p quota-example-policies" >&2; exit 1; }
done
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

. scripts/serve-lib.sh
start_server "$quota" "bench-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" --decision-log-entries 10000000
token="$(create_user bench enterprise)"
post_lua "$token"

# Uploads the two components alternately, one every 250 ms (start to start),
# for DURATION seconds; one JSON line per upload.
cat > "$work/swap.py" <<'PY'
import json, sys, time, urllib.error, urllib.request
base, admin, duration, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
policies = [(name, open(path, "rb").read()) for name, path in
            (("percent-grace", sys.argv[5]), ("reference", sys.argv[6]))]
period = 0.25
start = time.monotonic()
with open(out, "w") as log:
    i = 0
    while time.monotonic() - start < duration:
        name, body = policies[i % 2]
        req = urllib.request.Request(base + "/admin/policy", data=body, method="POST",
            headers={"Authorization": "Bearer " + admin, "Content-Type": "application/wasm"})
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, answer = r.status, json.load(r)
        except urllib.error.HTTPError as e:
            status, answer = e.code, {"error": e.read().decode(errors="replace")}
        except OSError as e:
            status, answer = 0, {"error": str(e)}
        round_trip = (time.monotonic() - sent) * 1e3
        a = answer.get("activated") or {}
        log.write(json.dumps({"policy": name, "status": status, "round_trip_ms": round_trip,
            "cache": a.get("cache"), "load_ms": a.get("load_ms"),
            "self_test_ms": a.get("self_test_ms"), "total_ms": a.get("total_ms"),
            "error": answer.get("error")}) + "\n")
        log.flush()
        i += 1
        time.sleep(max(0.0, start + i * period - time.monotonic()))
PY

load() {
    wrk -t1 -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "$base/v1/drafts" > "$work/$1.txt"
    grep -E "Requests/sec|99%|Non-2xx|Socket errors" "$work/$1.txt"
}

echo "== (a) steady: POST /v1/drafts, $connections connections, ${duration} s"
load steady
echo "== (b) swapping: the same load, an upload to /admin/policy every 250 ms"
python3 "$work/swap.py" "$base" "$admin" "$duration" "$work/swaps.jsonl" "$grace" "$reference" &
swapper=$!
load swapping
wait "$swapper"
echo "== (c) steady again"
load again

python3 - "$work/steady.txt" "$work/swapping.txt" "$work/again.txt" "$work/swaps.jsonl" <<'PY'
import json, re, statistics, sys

def wrk(path):
    text = open(path).read()
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: (.*)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p99": float(p99.group(1)) * unit[p99.group(2)],
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket": socket.group(1).strip() if socket else None,
    }

steady, swapping, again = wrk(sys.argv[1]), wrk(sys.argv[2]), wrk(sys.argv[3])
swaps = [json.loads(line) for line in open(sys.argv[4])]
failed = [s for s in swaps if s["status"] != 200]

print("\n== activations (upload to active: the server's total_ms; the client's round trip)")
for n, s in enumerate(swaps, 1):
    if s["status"] == 200:
        print(f"  {n:>3} {s['policy']:<13} {s['cache']:<4}  total {s['total_ms']:8.2f} ms"
              f"  (load {s['load_ms']:7.2f}, self-test {s['self_test_ms']:6.2f})"
              f"  round trip {s['round_trip_ms']:8.2f} ms")
    else:
        print(f"  {n:>3} {s['policy']:<13} HTTP {s['status']}: {s['error']}")

def times(outcome, key):
    return [s[key] for s in swaps if s["status"] == 200 and s["cache"] == outcome]

print("\n== summary")
for name, r in (("steady", steady), ("swapping", swapping), ("again", again)):
    print(f"  {name:<9} {r['rps']:>10,.0f} req/s  p99 {r['p99']:7.2f} ms  "
          f"{r['requests']:,} creates, non-2xx {r['non2xx']}"
          + (f", socket errors: {r['socket']}" if r["socket"] else ""))
ratio = swapping["p99"] / steady["p99"]
print(f"  p99 swapping / steady: {ratio:.2f}x (target: at most 2x: {'met' if ratio <= 2 else 'missed'});"
      f" req/s swapping / steady: {swapping['rps'] / steady['rps']:.2f}")
print(f"  p99 again / steady: {again['p99'] / steady['p99']:.2f}x (no swaps in either: drift and noise)")
print(f"  activations: {len(swaps)} uploads, {len(swaps) - len(failed)} active, {len(failed)} refused")
medians = {}
for outcome in ("miss", "hit"):
    total, trip = times(outcome, "total_ms"), times(outcome, "round_trip_ms")
    if total:
        medians[outcome] = statistics.median(total)
        print(f"  upload to active, cache {outcome}: n={len(total)}, total_ms median {statistics.median(total):.2f}"
              f" (min {min(total):.2f}, max {max(total):.2f}); round trip median {statistics.median(trip):.2f}"
              f" (max {max(trip):.2f})")
if len(medians) == 2:
    print(f"  upload to active, miss / hit (medians of total_ms): {medians['miss'] / medians['hit']:.1f}x")
phases = (steady, swapping, again)
if failed or any(r["non2xx"] or r["socket"] for r in phases):
    print("FAILED: non-2xx answers, socket errors or refused uploads (see above)")
    sys.exit(1)
PY
