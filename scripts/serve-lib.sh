# Shared by the scripts that drive a real server: sourced, not run.
#
# start_server QUOTA_BINARY ADMIN_TOKEN [SERVE_OPTION...]: starts `quota serve`
# with demo plans (and any further options) on a free loopback port and a fresh
# database in $work (a temporary folder, removed with the server on exit); sets
# $base to the server's URL.
# create_user ID PLAN: prints the new user's API token.
# create_node ID MAX_OUTSTANDING: prints the new node credential's token.
# post_lua TOKEN: writes $work/post.lua (wrk: create drafts as that user).

start_server() {
    local quota="$1"
    admin="$2"
    shift 2
    work="$(mktemp -d)"
    QUOTA_ADMIN_TOKEN="$admin" "$quota" serve --addr 127.0.0.1:0 --db "$work/quota.db" --demo "$@" > "$work/serve.log" 2>&1 &
    server=$!
    trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
    for _ in $(seq 100); do
        grep -q '^quota listening on' "$work/serve.log" && break
        sleep 0.1
    done
    base="$(sed -n 's/^quota listening on //p' "$work/serve.log")"
    [ -n "$base" ] || { cat "$work/serve.log"; return 1; }
}

create_user() {
    admin_post /admin/users "{\"id\": \"$1\", \"plan_id\": \"$2\"}"
}

# create_node ID MAX_OUTSTANDING: prints the new node credential's token.
create_node() {
    admin_post /admin/nodes "{\"id\": \"$1\", \"max_outstanding\": $2}"
}

# admin_post PATH JSON: POSTs JSON as the admin; prints the answer's token.
admin_post() {
    python3 - "$base" "$admin" "$1" "$2" <<'PY'
import json, sys, urllib.request
base, admin, path, body = sys.argv[1:5]
req = urllib.request.Request(base + path, method="POST", data=body.encode(),
    headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["token"])
PY
}

# post_lua TOKEN: writes $work/post.lua, a wrk script that creates drafts as
# the user with TOKEN.
post_lua() {
    cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"title":"bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $1"
LUA
}
