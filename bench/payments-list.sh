#!/usr/bin/env bash
# GET /payments at scale: seeds COUNT payments (default 1,000,000) with `strongroom payments seed` on SQLite
# and on PostgreSQL, then measures latency (p50/p99) and throughput of five listings with wrk (the last a
# deep page that holds data, since page 1000 of 500 lies past the end of the filtered million). It measures
# and prints; it asserts nothing.
#
#   bench/payments-list.sh
#   COUNT=200000 DURATION=5s BACKENDS=sqlite bench/payments-list.sh
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${COUNT:-1000000}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-4}"
BACKENDS="${BACKENDS:-sqlite postgres}"

source bench/lib.sh
bench_setup

FROM=$(date -u -d '-270 days' +%F)
TO=$(date -u -d '-90 days' +%F)
FILTER="status=authorized,captured&currency_code=EUR,USD&from=$FROM&to=$TO"
QUERIES=(
    "no filter, page 1|"
    "status=captured, page 1|status=captured"
    "status+currency+dates, page 1|$FILTER"
    "same, page 1000, limit 500|$FILTER&page=1000&limit=500"
    "same, page 300, limit 500|$FILTER&page=300&limit=500"
)

measure() {
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency -H "X-API-Key: $KEY" "$1" | wrk_summary
}

RESULTS=()
for backend in $BACKENDS; do
    dir="$WORK/$backend"
    mkdir -p "$dir"
    open_backend "$backend" "$dir"
    [ -n "$URL" ] || continue
    export STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$URL"
    KEY=$("$BIN" account create --name default --json 2>/dev/null | sed 's/.*"api_key":"\([^"]*\)".*/\1/')
    echo "$backend: seeding $COUNT payments" >&2
    seed_started=$(date +%s.%N)
    "$BIN" payments seed --count "$COUNT" --quiet
    seed_seconds=$(awk -v s="$seed_started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    [ "$backend" = postgres ] && psql "$URL" -qc 'VACUUM ANALYZE' >/dev/null
    RUST_LOG=warn,strongroom::server=info start_server "$dir"
    for entry in "${QUERIES[@]}"; do
        name=${entry%%|*}
        query=${entry#*|}
        total=$(curl -s -H "X-API-Key: $KEY" "$BASE/payments?$query" | sed 's/.*"total_items":\([0-9]*\).*/\1/')
        read -r rps p50 p99 errors < <(measure "$BASE/payments?$query")
        RESULTS+=("$(printf '%-9s %-30s %10s %9s %9s %9s %7s   (seeded in %s s)' "$backend" "$name" "$total" "$rps" "$p50" "$p99" "$errors" "$seed_seconds")")
    done
    stop_server
    drop_backend
done

printf '\n%s payments, wrk %s connections for %s each; from=%s to=%s\n' "$COUNT" "$CONNS" "$DURATION" "$FROM" "$TO"
printf '%-9s %-30s %10s %9s %9s %9s %7s\n' backend query total_items "req/s" "p50 ms" "p99 ms" errors
printf '%s\n' "${RESULTS[@]}"
