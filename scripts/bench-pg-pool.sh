#!/usr/bin/env bash
# Guarded creates on PostgreSQL with the host's pool at several sizes
# (`quota serve --db-pool`), beside pgbench running the same transaction
# (BENCHMARKS.md, "The pool's size"). One host per pool size on one
# database, loaded in turn, ROUNDS rounds; wrk with CONNECTIONS connections,
# USERS users on the unlimited demo plan drawn at random.
#
#   scripts/bench-pg-pool.sh [QUOTA_BINARY] [DURATION_SECONDS] [CONNECTIONS] [ROUNDS] [USERS] [POOLS]
set -euo pipefail
cd "$(dirname "$0")/.."
quota="${1:-target/release/quota}"
duration="${2:-8}"
connections="${3:-32}"
rounds="${4:-3}"
users="${5:-1000}"
pools="${6:-32 16 8 4}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

. scripts/pg-lib.sh
cp "$quota" "$work/quota"
quota="$work/quota"
admin="bench-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
pg_start
db=quota
db_url="$(pg_createdb "$db")"
declare -A host
for pool in $pools; do
    serve "$quota" "$db_url" --db-pool "$pool"
    host[$pool]="$url"
done
first="${host[${pools%% *}]}"
create_users "$first" enterprise "" "$users" >"$work/tokens"
lua "$work/tokens"

# run NAME: one load; prints "NAME rate/s p50 p99" (ms).
run() {
    if [ "$1" = pgbench ]; then
        rm -rf "$work/tx" && mkdir "$work/tx"
        pg_client pgbench -h "$pg_dir" -U "$pg_user" -n -M prepared -c "$connections" -j 1 -T "$duration" \
            -f scripts/pgbench/guarded-create.sql -D lo=1 -D hi="$users" -D ent=drafts.max \
            -D ukey=drafts.created -D title=bench -D now="$(date +%s%3N)" \
            -l --log-prefix="$work/tx/tx" "$db" >"$work/pgbench.out" 2>&1
        rate="$(sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$work/pgbench.out")"
        sort -n -k3 "$work"/tx/tx* | awk -v rate="$rate" '{ l[NR] = $3 } END {
            printf "pgbench\t%.0f\t%.2f\t%.2f\n", rate, l[int(NR / 2) + 1] / 1000, l[int(NR * 0.99) + 1] / 1000 }'
    else
        wrk -t1 -c"$connections" -d"${duration}s" --latency -s "$work/tokens.lua" "${host[$1]}/v1/drafts" >"$work/wrk.out"
        awk -v name="pool-$1" '
            /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 } /^Requests\/sec/ { rate = $2 }
            /Non-2xx/ { print "errors: " $0 > "/dev/stderr" }
            END { printf "%s\t%.0f\t%s\t%s\n", name, rate, p50, p99 }' "$work/wrk.out"
    fi
}

echo "warm-up: 2 s each, not counted"
saved="$duration"
duration=2
for name in $pools pgbench; do run "$name" >/dev/null; done
duration="$saved"
echo -e "round\tload\tcreates/s\tp50\tp99"
for round in $(seq "$rounds"); do
    for name in $pools pgbench; do
        echo -e "$round\t$(run "$name")"
    done
done
