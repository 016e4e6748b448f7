#!/usr/bin/env bash
# Growth (BENCHMARKS.md, "PostgreSQL: one host, two hosts, the ceiling,
# growth"): a guarded create's latency on an empty database beside one
# holding USERS users and DRAFTS_PER_USER drafts each, on both backends, in
# one run.
#
# Four databases, each with its own `quota serve`: SQLite empty, SQLite
# loaded, PostgreSQL empty, PostgreSQL loaded (one throwaway cluster,
# durable defaults). In each, 1,000 bench users on the unlimited
# `enterprise` plan are created through the admin API (for their tokens);
# the loaded ones then get USERS − 1,000 more users, DRAFTS_PER_USER drafts
# for every user and a usage counter per user equal to its drafts, in bulk
# with SQL (generate_series on PostgreSQL, a recursive CTE through
# python3's sqlite3 on SQLite), with the host stopped. The empty ones get
# only a counter of 0 per bench user. Both PostgreSQL databases are then
# VACUUM ANALYZEd; the hosts start again.
#
# Then, in rounds (the order reversed every other round), wrk (1 thread,
# --latency) posts drafts as a bench user drawn at random per request, for
# DURATION seconds at each number of connections in CONNECTIONS. Bounded
# and self-cleaning: everything it starts is stopped and every database
# removed on exit.
#
#   scripts/bench-pg-growth.sh [QUOTA_BINARY] [DURATION_SECONDS] [ROUNDS] [USERS] [DRAFTS_PER_USER] [CONNECTIONS]
#   e.g. scripts/bench-pg-growth.sh target/release/quota 8 5 1000000 10 "1 32"
set -euo pipefail
cd "$(dirname "$0")/.."
quota="${1:-target/release/quota}"
duration="${2:-8}"
rounds="${3:-3}"
users="${4:-1000000}"
per_user="${5:-10}"
conns="${6:-1 32}"
bench_users=1000
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

. scripts/pg-lib.sh
free_gb=$(($(df -Pk "$work" | awk 'NR == 2 {print $4}') / 1024 / 1024))
[ "$free_gb" -ge 10 ] || { echo "needs about 10 GB free in $(dirname "$work"), has $free_gb GB" >&2; exit 1; }
cp "$quota" "$work/quota"
quota="$work/quota"
admin="bench-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$work/out"

pg_start
declare -A db_of url_of
db_of[pg-empty]="$(pg_createdb empty)"
db_of[pg-loaded]="$(pg_createdb loaded)"
db_of[sqlite-empty]="$work/empty.db"
db_of[sqlite-loaded]="$work/loaded.db"
configs=(sqlite-empty sqlite-loaded pg-empty pg-loaded)

load_pg() {
    # The bench users are b1..b1000; the rest g0000001…, in id order.
    pg_psql "$1" -v users="$users" -v bench="$bench_users" -v per_user="$per_user" <<'SQL'
SET statement_timeout = '20min';
SET session_replication_role = replica; -- rows consistent by construction: no per-row FK triggers
INSERT INTO users (id, plan_id, created_at_ms, updated_at_ms)
SELECT 'g' || lpad(i::text, 7, '0'), 'enterprise', 0, 0 FROM generate_series(1, :users - :bench) i;
DROP INDEX drafts_by_owner;
INSERT INTO drafts (owner_id, title, created_at_ms)
SELECT 'g' || lpad(((i - 1) / :per_user + 1)::text, 7, '0'), 'draft', 0
FROM generate_series(1, (:users - :bench)::bigint * :per_user) i;
INSERT INTO drafts (owner_id, title, created_at_ms)
SELECT u.id, 'draft', 0 FROM users u, generate_series(1, :per_user) WHERE u.id LIKE 'b%';
CREATE INDEX drafts_by_owner ON drafts (owner_id);
INSERT INTO usage_counters (user_id, usage_key, value)
SELECT owner_id, 'drafts.created', count(*) FROM drafts GROUP BY owner_id;
SQL
}

load_sqlite() {
    timeout 1800 python3 - "$1" "$users" "$bench_users" "$per_user" <<'PY'
import sqlite3, sys
path, users, bench, per_user = sys.argv[1], *map(int, sys.argv[2:5])
con = sqlite3.connect(path, isolation_level=None)
con.execute("PRAGMA synchronous = OFF")
con.execute("BEGIN")
con.execute("""INSERT INTO users (id, plan_id, created_at_ms, updated_at_ms)
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
    SELECT printf('g%07d', i), 'enterprise', 0, 0 FROM s""", (users - bench,))
con.execute("DROP INDEX drafts_by_owner")
con.execute("""INSERT INTO drafts (owner_id, title, created_at_ms)
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
    SELECT printf('g%07d', (i - 1) / ? + 1), 'draft', 0 FROM s""", ((users - bench) * per_user, per_user))
con.execute("""INSERT INTO drafts (owner_id, title, created_at_ms)
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
    SELECT u.id, 'draft', 0 FROM users u, s WHERE u.id LIKE 'b%'""", (per_user,))
con.execute("CREATE INDEX drafts_by_owner ON drafts (owner_id)")
con.execute("""INSERT INTO usage_counters (user_id, usage_key, value)
    SELECT owner_id, 'drafts.created', count(*) FROM drafts GROUP BY owner_id""")
con.execute("COMMIT")
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
}

counters_of_bench_users() {
    local sql="INSERT INTO usage_counters (user_id, usage_key, value) SELECT id, 'drafts.created', 0 FROM users"
    case "$1" in
    pg-*) pg_psql "$2" -c "$sql" ;;
    *) python3 -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()" "$2" "$sql" ;;
    esac
}

for name in "${configs[@]}"; do
    db="${db_of[$name]}"
    serve "$quota" "$db"
    create_users "$url" enterprise b "$bench_users" >"$work/$name.tokens"
    lua "$work/$name.tokens"
    stop_host "$serve_pid"
    start=$(date +%s)
    case "$name" in
    pg-loaded) load_pg loaded ;;
    sqlite-loaded) load_sqlite "$db" ;;
    pg-empty) counters_of_bench_users "$name" empty ;;
    sqlite-empty) counters_of_bench_users "$name" "$db" ;;
    esac
    echo "$name: loaded in $(($(date +%s) - start)) s"
done
for db in empty loaded; do pg_psql "$db" -c "VACUUM ANALYZE"; done
echo "sizes: SQLite empty $(du -sh "$work/empty.db" | cut -f1), loaded $(du -sh "$work/loaded.db" | cut -f1);" \
    "PostgreSQL empty $(pg_psql empty -Atc "SELECT pg_size_pretty(pg_database_size('empty'))")," \
    "loaded $(pg_psql loaded -Atc "SELECT pg_size_pretty(pg_database_size('loaded'))")"
for name in "${configs[@]}"; do
    case "$name" in
    pg-*) echo "$name: $(pg_psql "${db_of[$name]##*/}" -Atc "SELECT (SELECT count(*) FROM users) || ' users, ' || (SELECT count(*) FROM drafts) || ' drafts, usage ' || (SELECT sum(value) FROM usage_counters)")" ;;
    *) echo "$name: $(python3 -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print('%d users, %d drafts, usage %s' % c.execute('SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM drafts), (SELECT sum(value) FROM usage_counters)').fetchone())" "${db_of[$name]}")" ;;
    esac
    serve "$quota" "${db_of[$name]}"
    url_of[$name]="$url"
done

echo "warm-up: 3 s of each database, not counted"
for name in "${configs[@]}"; do
    wrk -t1 -c32 -d3s -s "$work/$name.tokens.lua" "${url_of[$name]}/v1/drafts" >/dev/null
done

ms() {
    python3 -c '
import re, sys
v, u = re.fullmatch(r"([\d.]+)(us|ms|s)", sys.argv[1]).groups()
print(round(float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u], 3))' "$1"
}
results="$work/results.tsv"
for round in $(seq "$rounds"); do
    order=("${configs[@]}")
    [ $((round % 2)) = 0 ] && order=(pg-loaded pg-empty sqlite-loaded sqlite-empty)
    for c in $conns; do
        for name in "${order[@]}"; do
            out="$work/out/r$round-$name-c$c.wrk"
            wrk -t1 -c"$c" -d"${duration}s" --latency -s "$work/$name.tokens.lua" "${url_of[$name]}/v1/drafts" >"$out"
            rate="$(awk '/Requests\/sec/ {print $2}' "$out")"
            p50="$(ms "$(awk '$1 == "50%" {print $2}' "$out")")"
            p99="$(ms "$(awk '$1 == "99%" {print $2}' "$out")")"
            errors="$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$out")"
            line="$round	$name	$c	$rate	$p50	$p99	$errors"
            echo "$line" >>"$results"
            echo "$line"
        done
    done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
med = {}
for r in rows:
    med.setdefault((r[1], r[2]), []).append(r)
print(f"\nmedians of {len(set(r[0] for r in rows))} rounds")
print("| database | connections | creates/s | p50 | p99 | errors | p50 per round |")
print("|---|---|---|---|---|---|---|")
m = {}
for (name, c), sel in sorted(med.items(), key=lambda kv: (int(kv[0][1]), kv[0][0])):
    rate = statistics.median(float(r[3]) for r in sel)
    p50 = statistics.median(float(r[4]) for r in sel)
    p99 = statistics.median(float(r[5]) for r in sel)
    m[name, c] = (rate, p50, p99)
    print(f"| {name} | {c} | {rate:,.0f} | {p50:.2f} ms | {p99:.2f} ms | {sum(int(r[6]) for r in sel)} | "
          + ", ".join(r[4] for r in sel) + " |")
print("\nloaded / empty (medians; goal: p50 at most 1.3x)")
for backend in ("sqlite", "pg"):
    for c in sorted({k[1] for k in m}, key=int):
        e, l = m.get((backend + "-empty", c)), m.get((backend + "-loaded", c))
        if e and l:
            print(f"{backend}, {c} connections: p50 {l[1] / e[1]:.2f}x, p99 {l[2] / e[2]:.2f}x, creates/s {l[0] / e[0]:.2f}x")
PY

echo
echo "service logs: lines that are not the start banner"
for log in "$work"/host-*/serve.log; do
    grep -vE '^(quota listening on|database:|state:|admin token:|try:)' "$log" | sort | uniq -c | sort -rn | head -5 || true
done
