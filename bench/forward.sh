#!/usr/bin/env bash
# Forwarding benchmark: one local receiver (examples/webhook_receiver.rs, answering every POST /hook with
# 200) called directly and through POST /forward of the release server, in the same run, at 1 and 16
# connections; prints req/s and p50/p99 of both and what the proxy adds (latency at p50 and p99, and
# forwarded throughput as a share of direct). It measures and prints; it asserts nothing.
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
cargo build --release --quiet --example webhook_receiver
BIN="$TARGET/release/strongroom"
RECEIVER_BIN="$TARGET/release/examples/webhook_receiver"
RECEIVER_PID=""

stop_receiver() {
    if [ -n "$RECEIVER_PID" ]; then
        kill "$RECEIVER_PID" 2>/dev/null && wait "$RECEIVER_PID" 2>/dev/null || true
    fi
    RECEIVER_PID=""
}
trap 'stop_receiver; bench_cleanup' EXIT

"$RECEIVER_BIN" 127.0.0.1:0 >"$WORK/receiver.log" 2>&1 &
RECEIVER_PID=$!
RECEIVER=""
for _ in $(seq 1 100); do
    RECEIVER=$(grep -o 'listening on [0-9.:]*' "$WORK/receiver.log" 2>/dev/null | awk '{print $3}') || true
    [ -n "$RECEIVER" ] && break
    sleep 0.05
done
[ -n "$RECEIVER" ] || { echo "the receiver did not start" >&2; exit 1; }

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
    KEY=$(grep -o 'sr_[A-Za-z0-9_-]*' "$WORK/$backend/stdout" | head -1)
    ACCOUNT=$(curl -s -H "X-API-Key: $KEY" "$BASE/account" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    "$BIN" destination add --account "$ACCOUNT" --url "http://$RECEIVER/" --json >/dev/null
    TOKEN=$(curl -s -H "X-API-Key: $KEY" -H 'Content-Type: application/json' "$BASE/cde-import" \
        -d '{"account_number":"4111111111111111","expiry_month":4,"expiry_year":2031,"cardholder_name":"Bench Holder"}' \
        | sed 's/.*"id":"\([^"]*\)".*/\1/')
    export STRONGROOM_BENCH_KEY="$KEY" FORWARD_TOKEN="$TOKEN" FORWARD_DESTINATION="http://$RECEIVER/hook"
    for conns in $CONNECTIONS; do
        read -r d_rps d_p50 d_p99 d_err < <(measure direct "http://$RECEIVER" "$conns")
        read -r f_rps f_p50 f_p99 f_err < <(measure forward "$BASE" "$conns")
        printf '%-9s %6s  %-16s %10s %9s %9s %8s\n' "$backend" "$conns" "direct" "$d_rps" "$d_p50" "$d_p99" "$d_err"
        printf '%-9s %6s  %-16s %10s %9s %9s %8s\n' "$backend" "$conns" "POST /forward" "$f_rps" "$f_p50" "$f_p99" "$f_err"
        awk -v b="$backend" -v c="$conns" -v dr="$d_rps" -v fr="$f_rps" -v d50="$d_p50" -v f50="$f_p50" \
            -v d99="$d_p99" -v f99="$f_p99" 'BEGIN {
                printf "%-9s %6s  %-16s %+9.2f ms at p50, %+.2f ms at p99, throughput %.0f%% of direct\n",
                    b, c, "added", f50 - d50, f99 - d99, (dr > 0 ? 100 * fr / dr : 0) }'
    done
    stop_server
    drop_backend
done
