#!/usr/bin/env bash
# Payment creation: POST /payments/one-off (automatic capture, one token, the built-in sandbox) at 1, 16
# and 64 connections on each backend, each step preceded by GET /health at the same connection count
# on the same server, so the share of /health says how much of the machine a payment costs. Then a
# server whose sandbox answers after SANDBOX_LATENCY_MS (200) at SLOW_CONNS (256) connections, against
# the ideal of SLOW_CONNS / latency payments per second (SLOW_CONNS=0 skips it). It measures and
# prints; it asserts nothing.
#
#   bench/payments-create.sh
#   DURATION=5s BACKENDS=sqlite CONNECTIONS="16" bench/payments-create.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5s}"
BACKENDS="${BACKENDS:-sqlite postgres}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
SLOW_CONNS="${SLOW_CONNS:-256}"
SANDBOX_LATENCY_MS="${SANDBOX_LATENCY_MS:-200}"

source bench/lib.sh
bench_setup

# setup_account: an account with a token; sets KEY and TOKEN.
setup_account() {
    local created
    created=$("$BIN" account create --name "bench-pay-$1" --feature cde_import --json)
    KEY=$(echo "$created" | sed 's/.*"api_key":"\([^"]*\)".*/\1/')
    TOKEN=$(curl -s -H "X-API-Key: $KEY" -H 'Content-Type: application/json' "$BASE/cde-import" \
        -d '{"account_number":"4242424242424242","expiry_month":4,"expiry_year":2031,"cardholder_name":"Bench Holder"}' \
        | sed 's/.*"id":"\([^"]*\)".*/\1/')
}

threads() { echo $(( $1 < 2 ? $1 : 2 )); }

# pay CONNS DURATION: prints "req/s p50_ms p99_ms errors".
pay() {
    STRONGROOM_BENCH_KEY="$KEY" PAY_TOKEN="$TOKEN" \
        wrk -t"$(threads "$1")" -c"$1" -d"$2" --latency -s bench/payments.lua "$BASE" | wrk_summary
}

health() {
    wrk -t"$(threads "$1")" -c"$1" -d"$2" --latency "$BASE/health" | wrk_summary
}

row() { printf '%-9s %6s  %-26s %10s %9s %9s %8s %10s\n' "$@"; }
ROWS=()
for backend in $BACKENDS; do
    dir="$WORK/$backend"
    mkdir -p "$dir"
    open_backend "$backend" "$dir"
    [ -n "$URL" ] || continue
    export STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$URL"
    RUST_LOG=warn,strongroom::server=info start_server "$dir"
    setup_account "$backend"
    pay 16 1s >/dev/null # warm-up
    for conns in $CONNECTIONS; do
        read -r hrps hp50 hp99 herr < <(health "$conns" "$DURATION")
        read -r rps p50 p99 err < <(pay "$conns" "$DURATION")
        share=$(awk -v r="$rps" -v h="$hrps" 'BEGIN { if (h > 0) printf "%.1f%%", 100 * r / h; else print "-" }')
        ROWS+=("$(row "$backend" "$conns" "GET /health" "$hrps" "$hp50" "$hp99" "$herr" "")")
        ROWS+=("$(row "$backend" "$conns" "POST /payments/one-off" "$rps" "$p50" "$p99" "$err" "$share")")
    done
    stop_server
    # SLOW_CONNS=0 leaves the latency step out.
    if [ "$SLOW_CONNS" -eq 0 ]; then
        drop_backend
        continue
    fi
    rm -f "$dir/stderr"
    STRONGROOM_SANDBOX_LATENCY_MS="$SANDBOX_LATENCY_MS" RUST_LOG=warn,strongroom::server=info start_server "$dir"
    pay 64 1s >/dev/null # warm-up
    read -r rps p50 p99 err < <(pay "$SLOW_CONNS" "$DURATION")
    ideal=$(awk -v c="$SLOW_CONNS" -v l="$SANDBOX_LATENCY_MS" 'BEGIN { printf "%.0f", c * 1000 / l }')
    share=$(awk -v r="$rps" -v i="$ideal" 'BEGIN { printf "%.1f%%", 100 * r / i }')
    ROWS+=("$(row "$backend" "$SLOW_CONNS" "one-off, sandbox ${SANDBOX_LATENCY_MS} ms" "$rps" "$p50" "$p99" "$err" "$share")")
    stop_server
    drop_backend
done

printf '\nwrk %s per row; share: of /health in the same run, or (latency row) of the ideal %s conns / %s ms\n' \
    "$DURATION" "$SLOW_CONNS" "$SANDBOX_LATENCY_MS"
row backend conns request "req/s" "p50 ms" "p99 ms" errors share
printf '%s\n' "${ROWS[@]}"
