#!/usr/bin/env bash
# Tokenization benchmark: starts the release server on SQLite (synchronous=FULL) and on PostgreSQL, drives
# POST /cde-import with distinct valid test cards from wrk at 1, 16 and 64 connections, and measures the
# same server's GET /health in the same run. Each backend runs twice, on a fresh database each time: with
# the Prometheus metrics listener off and on (STRONGROOM_METRICS_LISTEN, scraped once a second during the
# "on" run as Prometheus would), so that the cost of the metrics shows side by side. It measures and
# prints; it asserts nothing. The `us/token` column is the CPU time (user + system, from /proc/<pid>/stat) spent
# by the server and its database during the tokenization run, per token created in it: on SQLite that is
# the server process alone (the database is in it); on PostgreSQL the server plus the backends serving
# this run's database. `srv p99` is the server's own p99 for the same requests, from its request log: the
# handlers' time, beside wrk's p99, which also counts waits before a request is read and corrects for
# coordinated omission (README, "Benchmarks").
#
#   bench/cde-import.sh                 # both backends, metrics off and on, 10 s per measurement, `file` key provider
#   DURATION=5s BACKENDS=sqlite CONNECTIONS=16 bench/cde-import.sh
#   METRICS="on" bench/cde-import.sh    # only with metrics
#   PROVIDERS="file pkcs11" METRICS=off bench/cde-import.sh   # also the master key in SoftHSM2 (installed if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
BACKENDS="${BACKENDS:-sqlite postgres}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
METRICS="${METRICS:-off on}"
PROVIDERS="${PROVIDERS:-file}"

source bench/lib.sh
bench_setup

# measure URL CONNECTIONS [wrk args...]: prints "req/s p50_ms p99_ms errors".
measure() {
    local url=$1 conns=$2
    shift 2
    wrk -t"$(( conns < 2 ? conns : 2 ))" -c"$conns" -d"$DURATION" --latency "$@" "$url" | wrk_summary
}

# pkcs11_env DIR: a SoftHSM2 token of this run in DIR, and the settings that point the server at it.
pkcs11_env() {
    local dir=$1
    if [ ! -e /usr/lib/softhsm/libsofthsm2.so ]; then
        (apt-get install -y softhsm2 || (apt-get update && apt-get install -y softhsm2)) >/dev/null
    fi
    mkdir -p "$dir/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir/tokens" >"$dir/softhsm2.conf"
    echo 4321 >"$dir/pin"
    chmod 600 "$dir/pin"
    SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label bench --pin 4321 --so-pin 87654321 >/dev/null
    export SOFTHSM2_CONF="$dir/softhsm2.conf" STRONGROOM_KEY_PROVIDER=pkcs11 \
        STRONGROOM_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so STRONGROOM_PKCS11_TOKEN_LABEL=bench \
        STRONGROOM_PKCS11_PIN_FILE="$dir/pin" STRONGROOM_PKCS11_KEY_LABEL=strongroom-master
}

# tokens_stored: how many tokens the run's database holds.
tokens_stored() {
    if [ -n "$PG_DB" ]; then
        psql "$URL" -Atc 'SELECT COUNT(*) FROM tokens'
    else
        sqlite3 "file:$STRONGROOM_DATA_DIR/strongroom.db?mode=ro" 'SELECT COUNT(*) FROM tokens'
    fi
}

printf '\n%-9s %-8s %-7s %6s  %-18s %10s %9s %9s %8s %9s %8s\n' backend provider metrics conns endpoint "req/s" "p50 ms" "p99 ms" errors "us/token" "srv p99"
for backend in $BACKENDS; do
  for provider in $PROVIDERS; do
    for metrics in $METRICS; do
        dir="$WORK/$backend-$provider-metrics-$metrics"
        mkdir -p "$dir"
        open_backend "$backend" "$dir"
        [ -n "$URL" ] || continue
        export STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$URL"
        if [ "$provider" = pkcs11 ]; then
            pkcs11_env "$dir/hsm"
            "$BIN" master-key init >/dev/null
        fi
        if [ "$metrics" = on ]; then
            export STRONGROOM_METRICS_LISTEN=127.0.0.1:0
        else
            unset STRONGROOM_METRICS_LISTEN
        fi
        start_server "$dir"
        KEY=$(grep -o 'sr_[A-Za-z0-9_-]*' "$dir/stdout" | head -1)
        SCRAPER_PID=""
        if [ "$metrics" = on ]; then
            maddr=$(grep -o 'metrics_addr=[0-9.:]*' "$dir/stderr" | head -1 | cut -d= -f2)
            ( while sleep 1; do curl -s "http://$maddr/metrics" >/dev/null || true; done ) &
            SCRAPER_PID=$!
        fi
        for conns in $CONNECTIONS; do
            read -r h_rps h_p50 h_p99 h_err < <(measure "$BASE/health" "$conns")
            tokens_before=$(tokens_stored)
            ticks_before=$(cpu_ticks)
            log_from=$(wc -l <"$dir/stderr")
            read -r t_rps t_p50 t_p99 t_err < <(STRONGROOM_BENCH_KEY="$KEY" measure "$BASE/cde-import" "$conns" -s bench/cde_import.lua)
            ticks_after=$(cpu_ticks)
            tokens_after=$(tokens_stored)
            t_cpu=$(us_per $(( ticks_after - ticks_before )) $(( tokens_after - tokens_before )))
            t_srv=$(server_p99 "$dir/stderr" "$log_from" /cde-import)
            printf '%-9s %-8s %-7s %6s  %-18s %10s %9s %9s %8s\n' "$backend" "$provider" "$metrics" "$conns" "GET /health" "$h_rps" "$h_p50" "$h_p99" "$h_err"
            printf '%-9s %-8s %-7s %6s  %-18s %10s %9s %9s %8s %9s %8s   (%.0f%% of /health)\n' "$backend" "$provider" "$metrics" "$conns" "POST /cde-import" "$t_rps" "$t_p50" "$t_p99" "$t_err" "$t_cpu" "$t_srv" \
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
        unset STRONGROOM_DATA_DIR STRONGROOM_DATABASE_URL SOFTHSM2_CONF STRONGROOM_KEY_PROVIDER STRONGROOM_METRICS_LISTEN \
            STRONGROOM_PKCS11_MODULE STRONGROOM_PKCS11_TOKEN_LABEL STRONGROOM_PKCS11_PIN_FILE STRONGROOM_PKCS11_KEY_LABEL
    done
  done
done
