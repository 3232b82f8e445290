#!/usr/bin/env bash
# Tokenization benchmark: starts the release server on SQLite (synchronous=FULL) and on PostgreSQL, drives
# POST /cde-import with distinct valid test cards from wrk at 1, 16 and 64 connections, and measures the
# same server's GET /health in the same run. It measures and prints; it asserts nothing.
#
#   bench/cde-import.sh                 # both backends, 10 s per measurement
#   DURATION=5s BACKENDS=sqlite bench/cde-import.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
BACKENDS="${BACKENDS:-sqlite postgres}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
PG_ADMIN_URL="${STRONGROOM_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk" >&2
    (apt-get install -y wrk || (apt-get update && apt-get install -y wrk)) >/dev/null
fi
cargo build --release --quiet
BIN="$PWD/target/release/strongroom"
WORK="$(mktemp -d)"
SERVER_PID=""
PG_DB=""

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    [ -n "$PG_DB" ] && psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_server NAME DATABASE_URL: runs the server on a free port; sets BASE and KEY.
start_server() {
    local dir="$WORK/$1"
    mkdir -p "$dir"
    STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$2" STRONGROOM_LISTEN=127.0.0.1:0 \
        "$BIN" serve >"$dir/stdout" 2>"$dir/stderr" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        BASE=$(grep -o 'addr=[0-9.:]*' "$dir/stderr" 2>/dev/null | head -1 | sed 's/addr=/http:\/\//') || true
        [ -n "$BASE" ] && break
        sleep 0.1
    done
    [ -n "$BASE" ] || { echo "the server did not start:" >&2; cat "$dir/stderr" >&2; exit 1; }
    KEY=$(grep -o 'sr_[A-Za-z0-9_-]*' "$dir/stdout" | head -1)
}

stop_server() {
    kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# measure URL CONNECTIONS [wrk args...]: prints "req/s p50_ms p99_ms errors".
measure() {
    local url=$1 conns=$2
    shift 2
    local threads=$(( conns < 2 ? conns : 2 ))
    wrk -t"$threads" -c"$conns" -d"$DURATION" --latency "$@" "$url" | awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000;
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0;
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000;
            return v;
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec/ { rps = $2 }
        /Non-2xx/ { errors = $NF }
        /Socket errors/ { errors = errors "+sock" }
        END { printf "%.0f %.2f %.2f %s\n", rps, p50, p99, (errors == "" ? 0 : errors) }'
}

printf '\n%-9s %6s  %-18s %10s %9s %9s %8s\n' backend conns endpoint "req/s" "p50 ms" "p99 ms" errors
for backend in $BACKENDS; do
    case $backend in
        sqlite) url="sqlite://$WORK/sqlite/strongroom.db" ;;
        postgres)
            if ! psql "$PG_ADMIN_URL" -qc 'SELECT 1' >/dev/null 2>&1; then
                echo "postgres: not reachable at $PG_ADMIN_URL, skipped" >&2
                continue
            fi
            PG_DB="strongroom_bench_$$"
            psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null
            url="${PG_ADMIN_URL%/*}/$PG_DB" ;;
        *) echo "unknown backend $backend" >&2; exit 2 ;;
    esac
    start_server "$backend" "$url"
    for conns in $CONNECTIONS; do
        read -r h_rps h_p50 h_p99 h_err < <(measure "$BASE/health" "$conns")
        read -r t_rps t_p50 t_p99 t_err < <(STRONGROOM_BENCH_KEY="$KEY" measure "$BASE/cde-import" "$conns" -s bench/cde_import.lua)
        printf '%-9s %6s  %-18s %10s %9s %9s %8s\n' "$backend" "$conns" "GET /health" "$h_rps" "$h_p50" "$h_p99" "$h_err"
        printf '%-9s %6s  %-18s %10s %9s %9s %8s   (%.0f%% of /health)\n' "$backend" "$conns" "POST /cde-import" "$t_rps" "$t_p50" "$t_p99" "$t_err" \
            "$(awk -v t="$t_rps" -v h="$h_rps" 'BEGIN { print (h > 0 ? 100 * t / h : 0) }')"
    done
    stop_server
    if [ "$backend" = postgres ]; then
        psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
        PG_DB=""
    fi
done
