#!/usr/bin/env bash
# Processor benchmark: payments per second (POST /payments/one-off, automatic capture) at CONNECTIONS
# connections through the built-in sandbox and through each connector against its fake run as a process,
# in the same run, one account per connector on the same release server. Prints req/s, p50/p99 and each
# connector's throughput as a share of the sandbox's. It measures and prints; it asserts nothing.
#
#   bench/processors.sh                                  # SQLite, 10 s each (after 1 s of warm-up), 16 connections
#   DURATION=5s BACKENDS="sqlite postgres" CONNECTIONS="1 16" bench/processors.sh
#
# A connector kind is measured when its fake exists as `examples/fake_<kind>.rs` (printing
# `listening on http://127.0.0.1:PORT` on stdout) and skipped otherwise; adding one is a case in
# `fake_args` and `secrets_of` below.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
BACKENDS="${BACKENDS:-sqlite}"
CONNECTIONS="${CONNECTIONS:-16}"
KINDS="${KINDS:-sandbox stripe adyen}"

source bench/lib.sh
bench_setup
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
BIN="$TARGET/release/strongroom"
FAKE_PIDS=()
trap 'for p in "${FAKE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; bench_cleanup' EXIT

# The example that fakes KIND's API, and its arguments.
fake_args() {
    case $1 in
        stripe) echo "fake_stripe --payment-intents --key sk_test_bench" ;;
        # The fake accepts only these credentials, the ones `secrets_of adyen` gives the processor;
        # it captures at once (automatic capture), so no notification URL is needed.
        adyen) echo "fake_adyen --key AQE_bench --merchant-account BenchEU --hmac-key 00AA00AA" ;;
    esac
}

# The secrets document of a KIND processor, as its fake accepts them.
secrets_of() {
    case $1 in
        stripe) echo '{"api_key": "sk_test_bench"}' ;;
        adyen) echo '{"api_key": "AQE_bench", "merchant_account": "BenchEU", "hmac_key": "00AA00AA"}' ;;
    esac
}

# start_fake KIND: builds and starts KIND's fake; sets FAKE_URL (empty: no fake for KIND).
start_fake() {
    FAKE_URL=""
    local args example
    args=$(fake_args "$1")
    example=${args%% *}
    [ -f "examples/$example.rs" ] || { echo "$1: no examples/$example.rs, skipped" >&2; return 0; }
    cargo build --release --quiet --example "$example"
    # shellcheck disable=SC2086
    "$TARGET/release/examples/$example" ${args#"$example"} >"$WORK/$1.fake.log" 2>&1 &
    FAKE_PIDS+=($!)
    for _ in $(seq 1 100); do
        FAKE_URL=$(grep -o 'listening on http://[0-9.:]*' "$WORK/$1.fake.log" 2>/dev/null | awk '{print $3}') || true
        [ -n "$FAKE_URL" ] && return 0
        sleep 0.05
    done
    echo "$1: the fake did not start" >&2
    cat "$WORK/$1.fake.log" >&2
    exit 1
}

declare -A FAKES
for kind in $KINDS; do
    [ "$kind" = sandbox ] && continue
    start_fake "$kind"
    FAKES[$kind]=$FAKE_URL
done

# setup_account KIND: an account whose only rule sends every payment to KIND, and a token of it; sets
# KEY and TOKEN (empty KEY: KIND has no fake).
setup_account() {
    local kind=$1 created account processor
    KEY=""
    if [ "$kind" != sandbox ] && [ -z "${FAKES[$kind]:-}" ]; then return 0; fi
    created=$("$BIN" account create --name "bench-$kind" --feature cde_import --json)
    account=$(echo "$created" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    KEY=$(echo "$created" | sed 's/.*"api_key":"\([^"]*\)".*/\1/')
    processor=sandbox
    if [ "$kind" != sandbox ]; then
        processor="bench-$kind"
        secrets_of "$kind" | "$BIN" processor add --account "$account" --name "$processor" \
            --kind "$kind" --api-base "${FAKES[$kind]}" --json >/dev/null
    fi
    echo "[{\"name\": \"bench\", \"processors\": [\"$processor\"]}]" \
        | "$BIN" route set --account "$account" --json >/dev/null
    TOKEN=$(curl -s -H "X-API-Key: $KEY" -H 'Content-Type: application/json' "$BASE/cde-import" \
        -d '{"account_number":"4242424242424242","expiry_month":4,"expiry_year":2031,"cardholder_name":"Bench Holder"}' \
        | sed 's/.*"id":"\([^"]*\)".*/\1/')
}

# measure CONNS: prints "req/s p50_ms p99_ms errors" for the account in KEY.
measure() {
    STRONGROOM_BENCH_KEY="$KEY" PAY_TOKEN="$TOKEN" \
        wrk -t"$(( $1 < 2 ? $1 : 2 ))" -c"$1" -d"$DURATION" --latency -s bench/payments.lua "$BASE" | wrk_summary
}

printf '\n%-9s %6s  %-9s %10s %9s %9s %8s %12s\n' backend conns processor "req/s" "p50 ms" "p99 ms" errors "of sandbox"
for backend in $BACKENDS; do
    mkdir -p "$WORK/$backend"
    open_backend "$backend" "$WORK/$backend"
    [ -n "$URL" ] || continue
    export STRONGROOM_DATA_DIR="$WORK/$backend" STRONGROOM_DATABASE_URL="$URL"
    start_server "$WORK/$backend"
    declare -A KEYS TOKENS
    for kind in $KINDS; do
        setup_account "$kind"
        KEYS[$kind]=$KEY
        TOKENS[$kind]=${TOKEN:-}
    done
    for conns in $CONNECTIONS; do
        sandbox_rps=0
        for kind in $KINDS; do
            KEY=${KEYS[$kind]}
            TOKEN=${TOKENS[$kind]}
            [ -n "$KEY" ] || continue
            # A short untimed run first, so that no kind pays for the server's or the fake's warm-up.
            DURATION=1s measure "$conns" >/dev/null
            read -r rps p50 p99 err < <(measure "$conns")
            [ "$kind" = sandbox ] && sandbox_rps=$rps
            share=$(awk -v r="$rps" -v s="$sandbox_rps" 'BEGIN { if (s > 0) printf "%.0f%%", 100 * r / s; else print "-" }')
            printf '%-9s %6s  %-9s %10s %9s %9s %8s %12s\n' "$backend" "$conns" "$kind" "$rps" "$p50" "$p99" "$err" "$share"
        done
    done
    unset KEYS TOKENS
    stop_server
    drop_backend
done
