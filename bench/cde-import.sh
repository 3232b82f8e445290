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

source bench/lib.sh
ensure_wrk
cargo build --release --quiet
BIN="$PWD/target/release/strongroom"
WORK="$(mktemp -d)"
SERVER_PID=""
PG_DB=""

cleanup() {
    stop_server
    [ -n "$PG_DB" ] && psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# measure URL CONNECTIONS [wrk args...]: prints "req/s p50_ms p99_ms errors".
measure() {
    local url=$1 conns=$2
    shift 2
    wrk -t"$(( conns < 2 ? conns : 2 ))" -c"$conns" -d"$DURATION" --latency "$@" "$url" | wrk_summary
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
    mkdir -p "$WORK/$backend"
    STRONGROOM_DATA_DIR="$WORK/$backend" STRONGROOM_DATABASE_URL="$url" start_server "$WORK/$backend"
    KEY=$(grep -o 'sr_[A-Za-z0-9_-]*' "$WORK/$backend/stdout" | head -1)
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
