#!/usr/bin/env bash
# Tokenization benchmark: starts the release server on SQLite (synchronous=FULL) and on PostgreSQL, drives
# POST /cde-import with distinct valid test cards from wrk at 1, 16 and 64 connections, and measures the
# same server's GET /health in the same run. Each backend runs twice, on a fresh database each time: with
# the Prometheus metrics listener off and on (STRONGROOM_METRICS_LISTEN, scraped once a second during the
# "on" run as Prometheus would), so that the cost of the metrics shows side by side. It measures and
# prints; it asserts nothing.
#
#   bench/cde-import.sh                 # both backends, metrics off and on, 10 s per measurement
#   DURATION=5s BACKENDS=sqlite CONNECTIONS=16 bench/cde-import.sh
#   METRICS="on" bench/cde-import.sh    # only with metrics
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
BACKENDS="${BACKENDS:-sqlite postgres}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
METRICS="${METRICS:-off on}"

source bench/lib.sh
bench_setup

# measure URL CONNECTIONS [wrk args...]: prints "req/s p50_ms p99_ms errors".
measure() {
    local url=$1 conns=$2
    shift 2
    wrk -t"$(( conns < 2 ? conns : 2 ))" -c"$conns" -d"$DURATION" --latency "$@" "$url" | wrk_summary
}

printf '\n%-9s %-7s %6s  %-18s %10s %9s %9s %8s\n' backend metrics conns endpoint "req/s" "p50 ms" "p99 ms" errors
for backend in $BACKENDS; do
  for metrics in $METRICS; do
    dir="$WORK/$backend-metrics-$metrics"
    mkdir -p "$dir"
    open_backend "$backend" "$dir"
    [ -n "$URL" ] || continue
    if [ "$metrics" = on ]; then
        export STRONGROOM_METRICS_LISTEN=127.0.0.1:0
    else
        unset STRONGROOM_METRICS_LISTEN
    fi
    STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$URL" start_server "$dir"
    KEY=$(grep -o 'sr_[A-Za-z0-9_-]*' "$dir/stdout" | head -1)
    SCRAPER_PID=""
    if [ "$metrics" = on ]; then
        maddr=$(grep -o 'metrics_addr=[0-9.:]*' "$dir/stderr" | head -1 | cut -d= -f2)
        ( while sleep 1; do curl -s "http://$maddr/metrics" >/dev/null || true; done ) &
        SCRAPER_PID=$!
    fi
    for conns in $CONNECTIONS; do
        read -r h_rps h_p50 h_p99 h_err < <(measure "$BASE/health" "$conns")
        read -r t_rps t_p50 t_p99 t_err < <(STRONGROOM_BENCH_KEY="$KEY" measure "$BASE/cde-import" "$conns" -s bench/cde_import.lua)
        printf '%-9s %-7s %6s  %-18s %10s %9s %9s %8s\n' "$backend" "$metrics" "$conns" "GET /health" "$h_rps" "$h_p50" "$h_p99" "$h_err"
        printf '%-9s %-7s %6s  %-18s %10s %9s %9s %8s   (%.0f%% of /health)\n' "$backend" "$metrics" "$conns" "POST /cde-import" "$t_rps" "$t_p50" "$t_p99" "$t_err" \
            "$(awk -v t="$t_rps" -v h="$h_rps" 'BEGIN { print (h > 0 ? 100 * t / h : 0) }')"
    done
    if [ -n "$SCRAPER_PID" ]; then
        kill "$SCRAPER_PID" 2>/dev/null || true
        wait "$SCRAPER_PID" 2>/dev/null || true
        # What the run counted, as a check that the metrics were really on.
        curl -s "http://$maddr/metrics" | grep -E '^strongroom_tokens_created_total\{origin="api"\}' | sed 's/^/    /' || true
    fi
    stop_server
    drop_backend
  done
done
