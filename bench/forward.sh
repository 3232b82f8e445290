#!/usr/bin/env bash
# Forwarding benchmark: one local receiver (examples/webhook_receiver.rs, answering every POST /hook with
# 200) called directly, through a bare relay (examples/bare_relay.rs: the same HTTP stack passing the POST
# on and nothing else, the floor under any proxy's cost) and through POST /forward of the release server,
# in the same run, at 1 and 16 connections; prints req/s and p50/p99 of each and what the proxy adds
# (latency at p50 and p99, and forwarded throughput as a share of direct and of the bare relay). It
# measures and prints; it asserts nothing.
#
#   bench/forward.sh                        # SQLite, 10 s per measurement, 1 and 16 connections
#   DURATION=5s BACKENDS="sqlite postgres" CONNECTIONS="1 16 64" bench/forward.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
BACKENDS="${BACKENDS:-sqlite}"
CONNECTIONS="${CONNECTIONS:-1 16}"

source bench/lib.sh
bench_setup
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet --example webhook_receiver --example bare_relay
BIN="$TARGET/release/strongroom"
HELPER_PIDS=()

stop_helpers() {
    for pid in "${HELPER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    HELPER_PIDS=()
}
trap 'stop_helpers; bench_cleanup' EXIT

# start_helper NAME: runs examples/NAME on a free port (stopped on exit) and sets ADDR to its address.
start_helper() {
    "$TARGET/release/examples/$1" 127.0.0.1:0 >"$WORK/$1.log" 2>&1 &
    HELPER_PIDS+=($!)
    ADDR=""
    for _ in $(seq 1 100); do
        ADDR=$(grep -o 'listening on [0-9.:]*' "$WORK/$1.log" 2>/dev/null | awk '{print $3}') || true
        [ -n "$ADDR" ] && break
        sleep 0.05
    done
    [ -n "$ADDR" ] || { echo "$1 did not start" >&2; exit 1; }
}
start_helper webhook_receiver
RECEIVER=$ADDR
start_helper bare_relay
RELAY=$ADDR

# measure MODE URL CONNS: prints "req/s p50_ms p99_ms errors".
measure() {
    FORWARD_MODE=$1 wrk -t"$(( $3 < 2 ? $3 : 2 ))" -c"$3" -d"$DURATION" --latency -s bench/forward.lua "$2" | wrk_summary
}

printf '\n%-9s %6s  %-16s %10s %9s %9s %8s\n' backend conns path "req/s" "p50 ms" "p99 ms" errors
for backend in $BACKENDS; do
    mkdir -p "$WORK/$backend"
    open_backend "$backend" "$WORK/$backend"
    [ -n "$URL" ] || continue
    export STRONGROOM_DATA_DIR="$WORK/$backend" STRONGROOM_DATABASE_URL="$URL"
    start_server "$WORK/$backend"
    server_account "$WORK/$backend"
    "$BIN" destination add --account "$ACCOUNT" --url "http://$RECEIVER/" --json >/dev/null
    TOKEN=$(curl -s -H "X-API-Key: $KEY" -H 'Content-Type: application/json' "$BASE/cde-import" \
        -d '{"account_number":"4111111111111111","expiry_month":4,"expiry_year":2031,"cardholder_name":"Bench Holder"}' \
        | sed 's/.*"id":"\([^"]*\)".*/\1/')
    export STRONGROOM_BENCH_KEY="$KEY" FORWARD_TOKEN="$TOKEN" FORWARD_DESTINATION="http://$RECEIVER/hook"
    for conns in $CONNECTIONS; do
        read -r d_rps d_p50 d_p99 d_err < <(measure direct "http://$RECEIVER" "$conns")
        read -r r_rps r_p50 r_p99 r_err < <(measure forward "http://$RELAY" "$conns")
        read -r f_rps f_p50 f_p99 f_err < <(measure forward "$BASE" "$conns")
        printf '%-9s %6s  %-16s %10s %9s %9s %8s\n' "$backend" "$conns" "direct" "$d_rps" "$d_p50" "$d_p99" "$d_err"
        printf '%-9s %6s  %-16s %10s %9s %9s %8s\n' "$backend" "$conns" "bare relay" "$r_rps" "$r_p50" "$r_p99" "$r_err"
        printf '%-9s %6s  %-16s %10s %9s %9s %8s\n' "$backend" "$conns" "POST /forward" "$f_rps" "$f_p50" "$f_p99" "$f_err"
        awk -v b="$backend" -v c="$conns" -v dr="$d_rps" -v rr="$r_rps" -v fr="$f_rps" -v d50="$d_p50" \
            -v f50="$f_p50" -v d99="$d_p99" -v f99="$f_p99" 'BEGIN {
                printf "%-9s %6s  %-16s %+9.2f ms at p50, %+.2f ms at p99; throughput %.0f%% of direct, %.0f%% of the bare relay (which is %.0f%% of direct)\n",
                    b, c, "added", f50 - d50, f99 - d99, (dr > 0 ? 100 * fr / dr : 0),
                    (rr > 0 ? 100 * fr / rr : 0), (dr > 0 ? 100 * rr / dr : 0) }'
    done
    stop_server
    drop_backend
done
