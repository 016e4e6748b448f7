#!/usr/bin/env bash
# Guarded creates on PostgreSQL beside SQLite, and the ceiling (BENCHMARKS.md,
# "PostgreSQL: one host, two hosts, the ceiling, growth"). One run, side by
# side, in rounds (the order reversed every other round):
#
#   HTTP (wrk, 1 thread, CONNECTIONS connections, POST /v1/drafts):
#     sqlite   one `quota serve` on a SQLite file
#     pg-1     one `quota serve` on PostgreSQL
#     pg-2     two `quota serve` on the same PostgreSQL database, each driven
#              by its own wrk with half the connections, at the same time
#              (rates summed, the worse p50 and p99)
#   pgbench (1 thread, CONNECTIONS clients, -M prepared), same database:
#     pgbench-guarded   the transaction a guarded create runs, one
#                       statement per round trip
#                       (scripts/pgbench/guarded-create.sql)
#     pgbench-pipelined the same statements in the three round trips quota
#                       sends them in (the script with pgbench's
#                       \startpipeline and \endpipeline around BEGIN to the
#                       state read, and around the usage upsert and COMMIT)
#     pgbench-update    a conditional UPDATE … RETURNING and the insert
#     pgbench-one       the same as one statement, autocommit
#
# each with USERS users on the unlimited `enterprise` demo plan picked at
# random per request ("many") and with one user ("hot"). PostgreSQL runs
# with its durable defaults (fsync, synchronous_commit on) on a unix socket
# in a temporary folder; SQLite at the service's default (synchronous=FULL).
# First, one create with log_statement=all: the statements it ran are
# printed and compared with scripts/pgbench/guarded-create.sql.
# After the rounds, one profiling pass (not in the medians): the wait events
# of PostgreSQL's sessions and the CPU each program used, per configuration.
# Bounded (each load DURATION seconds) and self-cleaning: everything started
# is stopped and removed on exit.
#
#   scripts/bench-pg.sh [QUOTA_BINARY] [DURATION_SECONDS] [CONNECTIONS] [ROUNDS] [USERS] [BEFORE_BINARY]
#
# With BEFORE_BINARY (another build of quota, e.g. of an earlier commit),
# one more configuration, `pg-1-before`: a host of that build on the same
# database, loaded as pg-1 is, to compare two builds side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
quota="${1:-target/release/quota}"
duration="${2:-8}"
connections="${3:-32}"
rounds="${4:-3}"
users="${5:-1000}"
before="${6:-}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

. scripts/pg-lib.sh
# A copy: a rebuild of target/ during the run does not change what is measured.
cp "$quota" "$work/quota"
quota="$work/quota"
admin="bench-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$work/out"

pg_start
db=quota
db_url="$(pg_createdb "$db")"
serve "$quota" "$work/sqlite.db"
sqlite_url="$url"
serve "$quota" "$db_url"
pg_a="$url"
serve "$quota" "$db_url"
pg_b="$url"
if [ -n "$before" ]; then
    cp "$before" "$work/quota-before"
    serve "$work/quota-before" "$db_url"
    pg_before="$url"
fi
echo "PostgreSQL $(pg_psql "$db" -Atc 'SHOW server_version') ($(pg_bin)): fsync $(pg_psql "$db" -Atc 'SHOW fsync'), synchronous_commit $(pg_psql "$db" -Atc 'SHOW synchronous_commit')"

# Users "1".."USERS" (numeric ids, so pgbench can draw them), the same on both backends.
create_users "$sqlite_url" enterprise "" "$users" >"$work/sqlite.tokens"
create_users "$pg_a" enterprise "" "$users" >"$work/pg.tokens"
head -1 "$work/sqlite.tokens" >"$work/sqlite.hot"
head -1 "$work/pg.tokens" >"$work/pg.hot"
# The UPDATE shapes count on an existing counter: usage 0 for users with no drafts.
pg_psql "$db" -c "INSERT INTO usage_counters (user_id, usage_key, value)
    SELECT id, 'drafts.created', 0 FROM users ON CONFLICT DO NOTHING"

# The statements one guarded create runs, from PostgreSQL's log
# (log_statement=all for a moment), against scripts/pgbench/guarded-create.sql.
pg_psql "$db" -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
mark=$(wc -l <"$pg_dir/server.log")
python3 - "$pg_a" "$(head -1 "$work/pg.tokens")" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/drafts", method="POST", data=b'{"title":"bench"}',
    headers={"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
assert urllib.request.urlopen(req).status == 201
PY
sleep 0.5
pg_psql "$db" -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
tail -n +"$((mark + 1))" "$pg_dir/server.log" >"$work/statements.log"
python3 - "$work/statements.log" scripts/pgbench/guarded-create.sql <<'PY'
import re, sys
entries, pid = [], None
for line in open(sys.argv[1]):
    m = re.match(r"\S+ \S+ \S+ \[(\d+)\] LOG:  (?:statement|execute [^:]*): (.*)", line)
    if m:
        entries.append([m.group(1), m.group(2)])
    elif line.startswith("\t") and entries:
        entries[-1][1] += " " + line
# The scripts pass NULLIF(:none, 0) where quota binds NULL (no period).
norm = lambda sql: re.sub(r"\s+", " ", re.sub(r"NULLIF\(\?, 0\)", "?", re.sub(r"\$\d+|:\w+", "?", sql))).strip().rstrip(";").strip()
# The create's transaction: a BEGIN whose session next runs the row lock
# (background tasks of the host run transactions of their own).
def next_of(i):
    return next((sql for p, sql in entries[i + 1:] if p == entries[i][0]), "")
start = next(i for i, (_, sql) in enumerate(entries)
             if sql.startswith("BEGIN ISOLATION LEVEL READ COMMITTED") and next_of(i).lstrip().startswith("SELECT pp.period"))
pid = entries[start][0]
ran = []
for p, sql in entries[start:]:
    if p == pid:
        ran.append(norm(sql))
        if sql.strip() == "COMMIT":
            break
script = open(sys.argv[2]).read()
script = "\n".join(l for l in script.splitlines() if not l.startswith(("--", "\\")))
bench = [norm(s) for s in script.split(";") if s.strip()]
print("a guarded create on PostgreSQL ran:")
for sql in ran:
    print("   " + (sql if len(sql) < 100 else sql[:97] + "..."))
print("the same statements as scripts/pgbench/guarded-create.sql:", "yes" if ran == bench else "NO")
if ran != bench:
    for a, b in zip(ran, bench):
        if a != b:
            print("   quota:   " + a + "\n   pgbench: " + b)
PY

for f in sqlite.tokens sqlite.hot pg.tokens pg.hot; do lua "$work/$f"; done

# The same transaction in quota's three round trips: BEGIN, the lock and the
# state read in one; the draft insert; the usage upsert and COMMIT in one.
awk '/^BEGIN /               { print "\\startpipeline" }
     /^INSERT INTO drafts/   { print "\\endpipeline" }
     /^INSERT INTO usage_/   { print "\\startpipeline" }
                             { print }
     /^COMMIT;/              { print "\\endpipeline" }' \
    scripts/pgbench/guarded-create.sql >"$work/guarded-create-pipelined.sql"

# load NAME WORKLOAD SECONDS OUT: one configuration under load; output in OUT*.
load() {
    local name="$1" workload="$2" seconds="$3" out="$4"
    local tokens=tokens hi="$users"
    [ "$workload" = hot ] && tokens=hot hi=1
    case "$name" in
    sqlite)
        wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/sqlite.$tokens.lua" "$sqlite_url/v1/drafts" >"$out.wrk"
        ;;
    pg-1)
        wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/pg.$tokens.lua" "$pg_a/v1/drafts" >"$out.wrk"
        ;;
    pg-1-before)
        wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/pg.$tokens.lua" "$pg_before/v1/drafts" >"$out.wrk"
        ;;
    pg-2)
        wrk -t1 -c"$((connections / 2))" -d"${seconds}s" --latency -s "$work/pg.$tokens.lua" "$pg_a/v1/drafts" >"$out.wrk" &
        local first=$!
        wrk -t1 -c"$((connections - connections / 2))" -d"${seconds}s" --latency -s "$work/pg.$tokens.lua" "$pg_b/v1/drafts" >"$out.wrk2"
        wait "$first"
        ;;
    pgbench-*)
        local script=scripts/pgbench/guarded-create.sql
        [ "$name" = pgbench-pipelined ] && script="$work/guarded-create-pipelined.sql"
        [ "$name" = pgbench-update ] && script=scripts/pgbench/update-returning.sql
        [ "$name" = pgbench-one ] && script=scripts/pgbench/update-one-statement.sql
        mkdir -p "$out.log"
        pg_client pgbench -h "$pg_dir" -U "$pg_user" -n -M prepared -c "$connections" -j 1 -T "$seconds" \
            -f "$script" -D lo=1 -D hi="$hi" -D ent=drafts.max -D ukey=drafts.created \
            -D title=bench -D now="$(date +%s%3N)" -l --log-prefix="$out.log/tx" "$db" >"$out.pgbench" 2>&1
        ;;
    esac
}

# figures OUT: rate/s, p50 ms, p99 ms, errors (non-2xx, socket errors, failed transactions).
figures() {
    python3 - "$1" <<'PY'
import glob, os, re, sys
out = sys.argv[1]
def ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
def wrk(path):
    text = open(path).read()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p = {m.group(1): ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", text, re.M)}
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    return rate, p["50"], p["99"], errors
if os.path.exists(out + ".wrk"):
    parts = [wrk(p) for p in (out + ".wrk", out + ".wrk2") if os.path.exists(p)]
    rate = sum(p[0] for p in parts)
    p50 = max(p[1] for p in parts)
    p99 = max(p[2] for p in parts)
    errors = sum(p[3] for p in parts)
else:
    text = open(out + ".pgbench").read()
    rate = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", text).group(1))
    m = re.search(r"number of failed transactions: (\d+)", text)
    errors = int(m.group(1)) if m else 0
    lat = sorted(int(line.split()[2]) for f in glob.glob(out + ".log/tx*") for line in open(f))
    p50 = lat[len(lat) // 2] / 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000
print(f"{rate:.0f}\t{p50:.2f}\t{p99:.2f}\t{errors}")
PY
}

configs=(sqlite pg-1 pg-2 pgbench-guarded pgbench-pipelined pgbench-update pgbench-one)
[ -n "$before" ] && configs=(sqlite pg-1-before pg-1 pg-2 pgbench-guarded pgbench-pipelined pgbench-update pgbench-one)
workloads=(many hot)
echo "warm-up: 2 s of each configuration, not counted"
for name in "${configs[@]}"; do load "$name" many 2 "$work/out/warmup-$name"; done

results="$work/results.tsv"
: >"$results"
for round in $(seq "$rounds"); do
    order=("${configs[@]}")
    if [ $((round % 2)) = 0 ]; then
        order=()
        for ((i = ${#configs[@]} - 1; i >= 0; i--)); do order+=("${configs[$i]}"); done
    fi
    for name in "${order[@]}"; do
        for workload in "${workloads[@]}"; do
            out="$work/out/r$round-$name-$workload"
            load "$name" "$workload" "$duration" "$out"
            line="$round	$name	$workload	$(figures "$out")"
            echo "$line" >>"$results"
            echo "$line"
        done
    done
done

python3 - "$results" "$connections" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
conns = sys.argv[2]
med = {}
for workload in ("many", "hot"):
    for name in dict.fromkeys(r[1] for r in rows):
        sel = [r for r in rows if r[1] == name and r[2] == workload]
        if sel:
            med[name, workload] = (statistics.median(float(r[3]) for r in sel),
                                   statistics.median(float(r[4]) for r in sel),
                                   statistics.median(float(r[5]) for r in sel),
                                   sum(int(r[6]) for r in sel),
                                   ", ".join(f"{float(r[3]):.0f}" for r in sel))
print(f"\nmedians of {len(set(r[0] for r in rows))} rounds, {conns} connections")
print("| configuration | users | creates/s | p50 | p99 | errors | per round |")
print("|---|---|---|---|---|---|---|")
for (name, workload), (rate, p50, p99, errors, each) in med.items():
    print(f"| {name} | {workload} | {rate:,.0f} | {p50:.2f} ms | {p99:.2f} ms | {errors} | {each} |")
print("\nratios (medians)")
for workload in ("many", "hot"):
    base = med.get(("pgbench-guarded", workload))
    for ceiling in ("pgbench-guarded", "pgbench-pipelined"):
        for name in ("pg-1-before", "pg-1", "pg-2"):
            q, c = med.get((name, workload)), med.get((ceiling, workload))
            if c and q:
                print(f"{workload}: {name} / {ceiling}: rate {q[0] / c[0]:.2f}x (goal >= 0.5), p99 {q[2] / c[2]:.2f}x (goal <= 2)")
    one, earlier = med.get(("pg-1", workload)), med.get(("pg-1-before", workload))
    if one and earlier:
        print(f"{workload}: pg-1 / pg-1-before: rate {one[0] / earlier[0]:.2f}x, p99 {one[2] / earlier[2]:.2f}x")
    lite, one, two = (med.get((n, workload)) for n in ("sqlite", "pg-1", "pg-2"))
    if lite and one and two:
        print(f"{workload}: pg-1 / sqlite rate {one[0] / lite[0]:.2f}x; pg-2 / pg-1 rate {two[0] / one[0]:.2f}x")
    for name in ("pgbench-update", "pgbench-one"):
        alt = med.get((name, workload))
        if base and alt:
            print(f"{workload}: {name} / pgbench-guarded: rate {alt[0] / base[0]:.2f}x, p99 {alt[2] / base[2]:.2f}x")
PY

# Profiling pass: wait events of the database's sessions (sampled every
# 0.2 s) and the CPU each program used (from /proc) in the middle of a load.
# waits N: N samples, 0.2 s apart, of the state and wait event of every
# other session of the database (one line each); one statement, so bounded.
waits() {
    pg_psql "$db" -At <<SQL
CREATE TEMP TABLE samples (s text);
DO \$\$ BEGIN
    FOR i IN 1..$1 LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO samples
        SELECT state || ' ' || coalesce(wait_event_type || ':' || wait_event, 'CPU')
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND datname = current_database() AND pid <> pg_backend_pid();
        PERFORM pg_sleep(0.2);
    END LOOP;
END \$\$;
SELECT s FROM samples;
SQL
}
cpu() {
    python3 - <<'PY'
import os
out = []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        comm = open(f"/proc/{pid}/comm").read().strip().split("/")[0].replace(" ", "_")
    except OSError:
        continue
    out.append(f"{pid}:{comm}={int(fields[11]) + int(fields[12])}")
total = open("/proc/stat").readline().split()[1:]
out.append(f":busy={sum(map(int, total)) - int(total[3]) - int(total[4])}")
print(" ".join(out))
PY
}
echo
echo "profile: sessions by state and wait event (share of samples), CPU by program (cores)"
for name in pg-1 pg-2 pgbench-guarded; do
    for workload in many hot; do
        out="$work/out/profile-$name-$workload"
        load "$name" "$workload" "$duration" "$out" &
        loader=$!
        sleep 1.5
        before="$(cpu)"
        t0="$(date +%s.%N)"
        window=$((duration > 4 ? duration - 3 : 1))
        waits $((window * 5)) >"$out.waits" &
        sampler=$!
        sleep "$window"
        after="$(cpu)"
        t1="$(date +%s.%N)"
        wait "$sampler" "$loader"
        echo "== $name $workload: $(figures "$out" | awk -F'\t' '{printf "%s creates/s, p99 %s ms", $1, $3}')"
        sort "$out.waits" | uniq -c | sort -rn | awk -v n="$(wc -l <"$out.waits")" '{c=$1; $1=""; printf "   %5.1f%%%s\n", 100*c/n, $0}' | head -8
        python3 - "$before" "$after" "$t0" "$t1" <<'PY'
import os, sys
parse = lambda s: {k: int(v) for k, v in (kv.rsplit("=", 1) for kv in s.split())}
a, b = parse(sys.argv[1]), parse(sys.argv[2])
seconds = (float(sys.argv[4]) - float(sys.argv[3])) * os.sysconf("SC_CLK_TCK")
busy = (b.pop(":busy") - a.pop(":busy")) / seconds
# Per process (pid:name), over processes alive at both ends, summed by name.
use = {}
for key, ticks in b.items():
    pid, name = key.split(":", 1)
    before = next((v for k, v in a.items() if k.split(":", 1)[0] == pid), None)
    if before is not None and ticks > before:
        use[name] = use.get(name, 0) + (ticks - before) / seconds
top = sorted(use.items(), key=lambda kv: -kv[1])[:5]
print(f"   CPU: all {busy:.2f} of {os.cpu_count()} cores; " + ", ".join(f"{k} {v:.2f}" for k, v in top))
PY
    done
done

echo
echo "service logs: lines that are not the start banner"
for log in "$work"/host-*/serve.log; do
    grep -vE '^(quota listening on|database:|state:|admin token:|try:)' "$log" | sort | uniq -c | sort -rn | head -5 || true
done
