#!/usr/bin/env bash
# Webhook benchmark, per backend:
#  1. the latency a subscribed webhook adds to the API call that causes an event: POST /cde-import from
#     wrk without a webhook, then with one subscribed to token.created (delivery is asynchronous, so the
#     difference should be the outbox rows written in the same commit, and nothing for the sending);
#     the subscribed run has the workers delivering to a local receiver while wrk runs (the events it
#     received during each run are printed), and "vs none" is its req/s as a share of the same
#     connections without a webhook. The same with no job workers running isolates the cost of the
#     outbox rows from that of sending;
#  2. delivery throughput to a local receiver (examples/webhook_receiver.rs, which checks every
#     signature): events are queued while the server runs without workers, then a server with
#     $WORKERS workers starts and the time until the receiver has them all is measured, with the CPU
#     time per event of the server (with its PostgreSQL backends) and of the receiver.
# "srv p99" is the server's own p99 for the same requests, from its request log (the handlers' time;
# wrk's p99 also counts waits before a request is read, README "Benchmarks").
# It measures and prints; it asserts nothing.
#
#   bench/webhooks.sh          # both backends, 10 s per measurement at 1 and 16 connections, 2 workers
#   DURATION=5s BACKENDS=sqlite CONNECTIONS="16 64" WORKERS="2 8" QUEUE_FOR=5s bench/webhooks.sh
#   STRONGROOM_WEBHOOK_DESTINATION_CONCURRENCY=4 bench/webhooks.sh   # servers take other settings from the environment
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
BACKENDS="${BACKENDS:-sqlite postgres}"
CONNECTIONS="${CONNECTIONS:-16}"
WORKERS="${WORKERS:-2}"
QUEUE_FOR="${QUEUE_FOR:-5s}"

source bench/lib.sh
bench_setup
source bench/receiver.sh
receiver_setup
# BIN comes from bench_setup: this build, or STRONGROOM_BENCH_BIN for an A/B against another build.

now() { date +%s.%N; }

# start_server reads the address from DIR/stderr, which the new process truncates only once it runs:
# remove the last server's log first, or its address may be read.
restart_server() {
    rm -f "$1/stderr"
    start_server "$1"
}

row() { printf '%-9s %5s  %-39s %10s %9s %9s %8s %9s %9s\n' "$@"; }
# share RPS BASE: RPS as a percentage of BASE (the same connections without a webhook).
share() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }'; }
printf '\n'
row backend conns "POST /cde-import" "req/s" "p50 ms" "p99 ms" errors "vs none" "srv p99"
DURING_ROWS=()
DELIVERY_ROWS=()
for backend in $BACKENDS; do
    dir="$WORK/$backend"
    mkdir -p "$dir"
    open_backend "$backend" "$dir"
    [ -n "$URL" ] || continue
    export STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$URL"
    STRONGROOM_WORKERS=2 start_server "$dir"
    server_account "$dir"

    # Untimed first: a new database's first writes grow its files (on SQLite the WAL, whose fsync costs
    # more while it grows), which the runs with a webhook, coming later, would not pay.
    cde_import 16 3s >/dev/null
    # One connection shows the latency a request pays; more show throughput.
    declare -A NONE=()
    for conns in 1 $CONNECTIONS; do
        read -r rps p50 p99 err _ srv < <(cde_import "$conns" "$DURATION")
        NONE[$conns]=$rps
        row "$backend" "$conns" "no webhook" "$rps" "$p50" "$p99" "$err" "100%" "$srv"
    done

    subscribe_receiver "$BIN" "$ACCOUNT" "$dir/receiver.log"

    # Delivery runs concurrently with the load: the receiver's count is sampled around each wrk run,
    # and the events it got during the run are printed beside the requests made.
    requests=$(received)
    for conns in 1 $CONNECTIONS; do
        got_before=$(received)
        read -r rps p50 p99 err made srv < <(cde_import "$conns" "$DURATION")
        got=$(( $(received) - got_before ))
        row "$backend" "$conns" "webhook subscribed, delivering" "$rps" "$p50" "$p99" "$err" "$(share "$rps" "${NONE[$conns]}")" "$srv"
        DURING_ROWS+=("$(printf '%-9s %5s %12s %14s' "$backend" "$conns" "$made" "$got")")
        requests=$((requests + made))
    done
    # Let the deliveries of that run finish before measuring pure delivery.
    for _ in $(seq 1 3000); do [ "$(received)" -ge "$requests" ] && break; sleep 0.1; done
    stop_server

    for workers in $WORKERS; do
        STRONGROOM_WORKERS=0 restart_server "$dir"
        queued=0
        for conns in 1 "${CONNECTIONS##* }"; do
            read -r rps p50 p99 err made srv < <(cde_import "$conns" "$QUEUE_FOR")
            [ "$workers" = "${WORKERS%% *}" ] && row "$backend" "$conns" "webhook subscribed, no workers (outbox)" "$rps" "$p50" "$p99" "$err" \
                "$([ -n "${NONE[$conns]:-}" ] && share "$rps" "${NONE[$conns]}" || echo -)" "$srv"
            queued=$((queued + made))
        done
        stop_server
        before=$(received)
        target=$((before + queued))
        started=$(now)
        receiver_ticks=$(pid_ticks "$RECEIVER_PID")
        STRONGROOM_WORKERS=$workers restart_server "$dir"
        # The server's ticks count from its start; its database backends' from now.
        server_ticks=$(( $(cpu_ticks) - $(pid_ticks "$SERVER_PID") ))
        deadline=$(( $(date +%s) + 600 ))
        while [ "$(received)" -lt "$target" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.05; done
        delivered=$(( $(received) - before ))
        elapsed=$(awk -v a="$started" -v b="$(now)" 'BEGIN { print b - a }')
        server_ticks=$(( $(cpu_ticks) - server_ticks ))
        receiver_ticks=$(( $(pid_ticks "$RECEIVER_PID") - receiver_ticks ))
        stop_server
        DELIVERY_ROWS+=("$(printf '%-9s %8s %15s %9.2f %10.0f %9s %13s %11s' "$backend" "$workers" "$delivered/$queued" "$elapsed" \
            "$(awk -v n="$delivered" -v t="$elapsed" 'BEGIN { print n / t }')" "$(bad_signatures)" \
            "$(us_per "$server_ticks" "$delivered")" "$(us_per "$receiver_ticks" "$delivered")")")
    done
    stop_receiver
    unset STRONGROOM_DATA_DIR STRONGROOM_DATABASE_URL
    drop_backend
done

printf '\n%-9s %5s %12s %14s\n' backend conns "tokens made" "delivered meanwhile"
for line in "${DURING_ROWS[@]}"; do echo "$line"; done
echo "(during the 'delivering' runs: requests wrk made, and events the receiver got while wrk ran)"

printf '\n%-9s %8s %15s %9s %10s %9s %13s %11s\n' backend workers sent/queued seconds "events/s" "bad sigs" "server us/ev" "recv us/ev"
for line in "${DELIVERY_ROWS[@]}"; do echo "$line"; done
echo "(events/s: deliveries queued by a server without workers, sent to a local receiver by one with WORKERS"
echo " workers, from its start until the last arrived; 'sent' can exceed wrk's count of queued requests by"
echo " the requests in flight when wrk stopped. us/ev: CPU time per event delivered, of the server with"
echo " its PostgreSQL backends (from its start), and of the receiver)"
