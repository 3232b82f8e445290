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

source bench/lib.sh
bench_setup

# measure URL CONNECTIONS [wrk args...]: prints "req/s p50_ms p99_ms errors".
measure() {
    local url=$1 conns=$2
    shift 2
    wrk -t"$(( conns < 2 ? conns : 2 ))" -c"$conns" -d"$DURATION" --latency "$@" "$url" | wrk_summary
}

printf '\n%-9s %6s  %-18s %10s %9s %9s %8s\n' backend conns endpoint "req/s" "p50 ms" "p99 ms" errors
for backend in $BACKENDS; do
    mkdir -p "$WORK/$backend"
    open_backend "$backend" "$WORK/$backend"
    [ -n "$URL" ] || continue
    STRONGROOM_DATA_DIR="$WORK/$backend" STRONGROOM_DATABASE_URL="$URL" start_server "$WORK/$backend"
    KEY=$(grep -o 'sr_[A-Za-z0-9_-]*' "$WORK/$backend/stdout" | head -1)
    for conns in $CONNECTIONS; do
        read -r h_rps h_p50 h_p99 h_err < <(measure "$BASE/health" "$conns")
        read -r t_rps t_p50 t_p99 t_err < <(STRONGROOM_BENCH_KEY="$KEY" measure "$BASE/cde-import" "$conns" -s bench/cde_import.lua)
        printf '%-9s %6s  %-18s %10s %9s %9s %8s\n' "$backend" "$conns" "GET /health" "$h_rps" "$h_p50" "$h_p99" "$h_err"
        printf '%-9s %6s  %-18s %10s %9s %9s %8s   (%.0f%% of /health)\n' "$backend" "$conns" "POST /cde-import" "$t_rps" "$t_p50" "$t_p99" "$t_err" \
            "$(awk -v t="$t_rps" -v h="$h_rps" 'BEGIN { print (h > 0 ? 100 * t / h : 0) }')"
    done
    stop_server
    drop_backend
done
