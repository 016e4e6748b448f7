# A throwaway PostgreSQL and `quota serve` hosts for the benchmark scripts:
# sourced, not run.
#
# on_exit COMMAND: runs COMMAND (a string, for eval) when the script exits,
#   however it exits; commands run newest first. Every start below
#   registers its own stop here.
# pg_bin: prints the folder of initdb and pg_ctl, found as the tests find
#   it (crates/throwaway-pg): $QUOTA_PG_BIN, else PATH (followed to the
#   package's folder), else the newest /usr/lib/postgresql/*/bin.
# pg_start [SERVER_OPTION...]: initdb into a fresh temporary folder (as the
#   `postgres` user when run as root) and starts a server on a unix socket
#   in it, no TCP, PostgreSQL's durable defaults (fsync and
#   synchronous_commit on); sets $pg_dir (socket folder) and $pg_data.
# pg_tool NAME ARG...: runs a server tool (as `postgres` when root).
# pg_createdb NAME: a new empty database; prints its URL for `quota --db`.
# pg_psql DB ARG...: psql on DB as the cluster's user.
# pg_client NAME ARG...: psql or pgbench of the server's version.
# serve QUOTA_BINARY DB_FILE_OR_URL [SERVE_OPTION...]: starts `quota serve`
#   with demo plans on a free loopback port (admin token $admin, which the
#   caller sets; a state folder of its own); sets $url to its URL,
#   $serve_log to its log and $serve_pid to its process. Stopped on exit
#   (call it in this shell, not in $(…), so the stop is registered here).
# $work: a temporary folder of the script's, removed on exit.
# stop_host PID: stops a host started by serve before the script ends.
# create_users BASE PLAN PREFIX N: creates users PREFIX1..PREFIXN on PLAN
#   through the admin API; prints their tokens, one a line.
# lua TOKENS_FILE: writes TOKENS_FILE.lua, a wrk script that creates drafts,
#   each as a user of the file drawn at random.

_on_exit=()
_run_on_exit() {
    local i
    for ((i = ${#_on_exit[@]} - 1; i >= 0; i--)); do
        eval "${_on_exit[$i]}" || true
    done
}
trap _run_on_exit EXIT
trap 'exit 130' INT TERM
on_exit() {
    _on_exit+=("$1")
}

pg_bin() {
    if [ -n "${QUOTA_PG_BIN:-}" ]; then
        echo "$QUOTA_PG_BIN"
        return
    fi
    local found
    if found="$(command -v initdb)"; then
        found="$(dirname "$(readlink -f "$found")")"
        if [ -x "$found/pg_ctl" ] && [ -x "$found/createdb" ]; then
            echo "$found"
            return
        fi
    fi
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -1)"
    [ -n "$found" ] && [ -x "$found/initdb" ] || {
        echo "no PostgreSQL server binaries: install the postgresql package (make pg-tools) or set QUOTA_PG_BIN" >&2
        return 1
    }
    echo "$found"
}

pg_tool() {
    local name="$1"
    shift
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$_pg_bin/$name" "$@"
    else
        "$_pg_bin/$name" "$@"
    fi
}

# The cluster's user, as in crates/throwaway-pg.
pg_user=quota

pg_start() {
    _pg_bin="$(pg_bin)"
    # Short: a socket path must fit in about 100 bytes.
    pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/qbench-XXXXXX")"
    pg_data="$pg_dir/data"
    on_exit 'rm -rf "$pg_dir"'
    [ "$(id -u)" = 0 ] && chown postgres: "$pg_dir"
    pg_tool initdb -D "$pg_data" -A trust -U "$pg_user" --no-instructions >/dev/null
    on_exit 'pg_tool pg_ctl -D "$pg_data" -m fast -w -t 60 stop >/dev/null 2>&1'
    pg_tool pg_ctl -D "$pg_data" -l "$pg_dir/server.log" -w -t 60 \
        -o "-k $pg_dir -c listen_addresses='' -c max_connections=200 $*" start >/dev/null
}

pg_url() {
    echo "postgres://$pg_user@$(printf %s "$pg_dir" | sed 's|/|%2F|g')/$1"
}

pg_createdb() {
    pg_tool createdb -h "$pg_dir" -U "$pg_user" -T template0 "$1"
    pg_url "$1"
}

# A client tool (psql, pgbench) of the same version as the server, else PATH's.
pg_client() {
    local name="$1"
    shift
    if [ -x "$_pg_bin/$name" ]; then "$_pg_bin/$name" "$@"; else "$name" "$@"; fi
}

pg_psql() {
    local db="$1"
    shift
    pg_client psql -X -q -v ON_ERROR_STOP=1 -h "$pg_dir" -U "$pg_user" -d "$db" "$@"
}

work="$(mktemp -d)"
on_exit 'rm -rf "$work"'

serve() {
    local quota="$1" db="$2"
    shift 2
    local dir
    dir="$(mktemp -d "$work/host-XXXXXX")"
    chmod 700 "$dir"
    QUOTA_ADMIN_TOKEN="$admin" "$quota" serve --addr 127.0.0.1:0 --db "$db" --state-dir "$dir/state" \
        --demo "$@" >"$dir/serve.log" 2>&1 &
    local pid=$!
    on_exit "kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null"
    serve_log="$dir/serve.log"
    serve_pid=$pid
    for _ in $(seq 300); do
        grep -qs '^quota listening on' "$dir/serve.log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    url="$(sed -n 's/^quota listening on //p' "$dir/serve.log" 2>/dev/null)"
    [ -n "$url" ] || { cat "$dir/serve.log" >&2; return 1; }
}

stop_host() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

create_users() {
    python3 - "$1" "$admin" "$2" "$3" "$4" <<'PY'
import json, sys, urllib.request
base, admin, plan, prefix, n = sys.argv[1:6]
for i in range(1, int(n) + 1):
    req = urllib.request.Request(base + "/admin/users", method="POST",
        data=json.dumps({"id": f"{prefix}{i}", "plan_id": plan}).encode(),
        headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
    print(json.load(urllib.request.urlopen(req, timeout=30))["token"])
PY
}

lua() {
    cat >"$1.lua" <<LUA
local tokens = {}
for line in io.lines("$1") do tokens[#tokens + 1] = "Bearer " .. line end
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
wrk.method = "POST"
wrk.body = '{"title":"bench"}'
wrk.headers["Content-Type"] = "application/json"
request = function()
    wrk.headers["Authorization"] = tokens[math.random(#tokens)]
    return wrk.format()
end
LUA
}
