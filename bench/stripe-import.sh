#!/usr/bin/env bash
# A Stripe import of CARDS cards (default 100,000: 1,000 customers of 100 cards) from the fake Stripe
# (examples/fake_stripe.rs, a real HTTP server that forwards each card to our ingest endpoint), first with
# no latency and no rate ceiling, then with a ceiling of RATE requests per second (default 100) on our side
# and the same limit enforced by the fake (which answers 429 above it). Prints wall time, cards per second,
# Stripe requests, 429s, and for the throttled run the ratio to the ideal time (requests / RATE). It
# measures and prints; it asserts nothing. Both backends by default. The throttled run takes about
# THROTTLED_CARDS / RATE seconds (default 10,000 cards: 100 s); THROTTLED_CARDS=0 skips it.
#
#   bench/stripe-import.sh
#   CARDS=20000 THROTTLED_CARDS=5000 BACKENDS="sqlite postgres" bench/stripe-import.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CARDS="${CARDS:-100000}"
THROTTLED_CARDS="${THROTTLED_CARDS:-10000}"
RATE="${RATE:-100}"
CARDS_EACH="${CARDS_EACH:-100}"
CONCURRENCY="${CONCURRENCY:-32}"
BACKENDS="${BACKENDS:-sqlite postgres}"

source bench/lib.sh
bench_setup
cargo build --release --quiet --example fake_stripe
FAKE_BIN="$PWD/target/release/examples/fake_stripe"
FAKE_PID=""
trap 'stop_fake; bench_cleanup' EXIT

stop_fake() {
    if [ -n "$FAKE_PID" ]; then
        kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null || true
    fi
    FAKE_PID=""
}

# start_fake DIR CARDS RATE(0: none): sets FAKE_URL.
start_fake() {
    local dir=$1 cards=$2 rate=$3 args=()
    [ "$rate" -gt 0 ] && args=(--rate-limit "$rate")
    "$FAKE_BIN" --customers $((cards / CARDS_EACH)) --cards-each "$CARDS_EACH" "${args[@]}" \
        >"$dir/fake.stdout" 2>"$dir/fake.stderr" &
    FAKE_PID=$!
    FAKE_URL=""
    for _ in $(seq 1 300); do
        FAKE_URL=$(grep -o 'http://[0-9.:]*' "$dir/fake.stdout" 2>/dev/null | head -1) || true
        [ -n "$FAKE_URL" ] && return 0
        sleep 0.1
    done
    echo "the fake Stripe did not start" >&2
    exit 1
}

field() { sed "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/"; }

# run_import BACKEND NAME CARDS RATE(0: none)
run_import() {
    local backend=$1 name=$2 cards=$3 rate=$4
    local dir="$WORK/$backend-$name"
    mkdir -p "$dir"
    open_backend "$backend" "$dir"
    [ -n "$URL" ] || return 0
    start_fake "$dir" "$cards" "$rate"
    export STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$URL"
    local key
    key=$("$BIN" account create --name default --feature cde_import --json 2>/dev/null | field api_key)
    STRONGROOM_STRIPE_API_BASE="$FAKE_URL" STRONGROOM_STRIPE_RATE_LIMIT="$rate" \
        STRONGROOM_IMPORT_CONCURRENCY="$CONCURRENCY" RUST_LOG=warn,strongroom::server=info \
        start_server "$dir"
    echo "$backend/$name: importing $cards cards" >&2
    local started id status body
    started=$(date +%s.%N)
    id=$(curl -s -X POST "$BASE/tokens/imports" -H "X-API-Key: $key" -H 'Content-Type: application/json' \
        -d '{"provider":"stripe","stripe":{"api_key":"sk_test_fake"}}' | field id)
    if ! [[ "$id" =~ ^[0-9a-f-]{36}$ ]]; then
        echo "the import did not start: $id" >&2
        exit 1
    fi
    while :; do
        body=$(curl -s "$BASE/tokens/imports/$id" -H "X-API-Key: $key")
        status=$(echo "$body" | field status)
        [ "$status" = finished ] || [ "$status" = aborted ] && break
        sleep 0.2
    done
    local seconds stats requests limited successes failures
    seconds=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    successes=$(echo "$body" | field successes)
    failures=$(echo "$body" | field failures)
    stats=$(curl -s "$FAKE_URL/_fake/stats")
    requests=$(echo "$stats" | field requests)
    limited=$(echo "$stats" | field rate_limited)
    local ideal="-" ratio="-"
    if [ "$rate" -gt 0 ]; then
        ideal=$(awk -v r="$requests" -v c="$rate" 'BEGIN { printf "%.1f", r / c }')
        ratio=$(awk -v s="$seconds" -v i="$ideal" 'BEGIN { printf "%.3f", s / i }')
    fi
    RESULTS+=("$(printf '%-8s %-12s %-9s %8s %8s %9s %10s %9s %6s %9s %7s' "$backend" "$name" "$status" \
        "$successes" "$failures" "$seconds" \
        "$(awk -v n="$successes" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')" \
        "$requests" "$limited" "$ideal" "$ratio")")
    stop_server
    stop_fake
    drop_backend
}

RESULTS=()
for backend in $BACKENDS; do
    run_import "$backend" unthrottled "$CARDS" 0
    if [ "$THROTTLED_CARDS" -gt 0 ]; then
        run_import "$backend" "${RATE}/s" "$THROTTLED_CARDS" "$RATE"
    fi
done

printf '\nStripe import from the fake Stripe (%s cards per customer, %s forwards in flight)\n' "$CARDS_EACH" "$CONCURRENCY"
printf '%-8s %-12s %-9s %8s %8s %9s %10s %9s %6s %9s %7s\n' backend ceiling status successes failures "wall s" "cards/s" requests 429s "ideal s" ratio
printf '%s\n' "${RESULTS[@]}"
