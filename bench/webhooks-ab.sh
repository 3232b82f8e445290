#!/usr/bin/env bash
# Interleaved A/B of two builds while a webhook is delivering: tokenization with a webhook subscribed to
# token.created, the job workers sending to a local receiver (examples/webhook_receiver.rs, which checks
# every signature), on ONE database per backend. Each round starts build A's server, then build B's, on
# that database; before each wrk run it waits until the receiver has every event made so far, so that
# both builds start from the same state. Single runs of bench/webhooks.sh move ten points or more from
# run to run on a small machine; rounds that alternate the builds on the same data are what to compare.
# It measures and prints; it asserts nothing.
#
#   BIN_A=/tmp/strongroom.old BIN_B=target/release/strongroom bench/webhooks-ab.sh
#   BIN_A=… BIN_B=… ROUNDS=5 CONNECTIONS="16 64" DURATION=5s BACKENDS=postgres bench/webhooks-ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
BACKENDS="${BACKENDS:-sqlite postgres}"
CONNECTIONS="${CONNECTIONS:-1 16}"
ROUNDS="${ROUNDS:-3}"
WORKERS="${WORKERS:-2}"
source bench/lib.sh
ab_setup
source bench/receiver.sh
receiver_setup

# serve BIN: starts BIN's server on this backend's database (the last server's log removed first, so
# that its address is not read).
serve() {
    rm -f "$dir/stderr"
    BIN=$1 STRONGROOM_WORKERS=$WORKERS start_server "$dir"
}

row() { printf '%-9s %5s %5s %5s %8s %8s %8s %9s %10s %9s\n' "$@"; }
printf '\n'
row backend round build conns "req/s" "p50 ms" "p99 ms" made delivered "us/token"
for backend in $BACKENDS; do
    dir="$WORK/$backend"
    mkdir -p "$dir"
    open_backend "$backend" "$dir"
    [ -n "$URL" ] || continue
    export STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$URL"
    serve "$BIN_A"
    server_account "$dir"
    subscribe_receiver "$BIN_A" "$ACCOUNT" "$dir/receiver.log"
    # Untimed first: a new database's first writes grow its files.
    read -r _ _ _ _ made _ < <(cde_import 16 "$DURATION")
    total=$made
    stop_server
    for round in $(seq 1 "$ROUNDS"); do
        for build in A B; do
            bin_var=BIN_$build
            serve "${!bin_var}"
            for conns in $CONNECTIONS; do
                for _ in $(seq 1 3000); do [ "$(received)" -ge "$total" ] && break; sleep 0.1; done
                got_before=$(received)
                ticks=$(cpu_ticks)
                read -r rps p50 p99 _ made _ < <(cde_import "$conns" "$DURATION")
                ticks=$(( $(cpu_ticks) - ticks ))
                row "$backend" "$round" "$build" "$conns" "$rps" "$p50" "$p99" "$made" \
                    "$(( $(received) - got_before ))" "$(us_per "$ticks" "$made")"
                total=$((total + made))
            done
            stop_server
        done
    done
    stop_receiver
    unset STRONGROOM_DATA_DIR STRONGROOM_DATABASE_URL
    drop_backend
done
echo "(each wrk run: DURATION of POST /cde-import with the webhook's events delivered meanwhile; 'delivered':"
echo " events the receiver got during the run; us/token: CPU of the server with its PostgreSQL backends"
echo " per token made, delivering included)"
