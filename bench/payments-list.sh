#!/usr/bin/env bash
# GET /payments at scale: seeds COUNT payments (default 1,000,000) of one account straight into the
# database with SQL (in creation order over the last 365 days, as a live server writes them, in every
# status and five currencies, with their per-day counts), on SQLite and on PostgreSQL, then measures
# latency (p50/p99) and throughput of five listings with wrk (the last a deep page that holds data, since
# page 1000 of 500 lies past the end of the filtered million). It measures and prints; it asserts nothing.
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
command -v sqlite3 >/dev/null 2>&1 || (apt-get install -y sqlite3 || (apt-get update && apt-get install -y sqlite3)) >/dev/null

NOW_US=$(( $(date +%s) * 1000000 ))
STEP_US=$(( 365 * 86400 * 1000000 / COUNT ))
SOURCE='{"type":"card","cardholder_name":"Bench Holder","expiry_month":12,"expiry_year":2031,"masked_account_number":"424242XXXXXX4242","pan_type":"FPAN","issuer":{"identification_number":"42424242","scheme":"VISA"}}'
DECLINED='[{"classifier":"DECLINED","message":"The issuer declined the payment","source":"processor"}]'
# Weighted as `strongroom payments seed` weighs them: r and c are 0..99 per payment, spread so that every
# pair of them comes once in each 10,000 payments (the same on both backends).
STATUS="CASE WHEN r < 35 THEN 'captured' WHEN r < 60 THEN 'settled' WHEN r < 74 THEN 'authorized' \
    WHEN r < 84 THEN 'failed' WHEN r < 92 THEN 'voided' WHEN r < 95 THEN 'settling' \
    WHEN r < 97 THEN 'processing' WHEN r < 99 THEN 'capturing' ELSE 'voiding' END"
R="(i * 37) % 100"
C="((i / 100) * 61) % 100"
AMOUNT="100 + (i * 7919) % 199900"
CURRENCY="CASE WHEN c < 40 THEN 'EUR' WHEN c < 70 THEN 'USD' WHEN c < 85 THEN 'GBP' WHEN c < 95 THEN 'CHF' ELSE 'JPY' END"
# The columns after the ids and instants, from i, amount and status (of the derived table p).
REST="CASE i % 3 WHEN 0 THEN 'ONE_OFF' WHEN 1 THEN 'UNSCHEDULED' ELSE 'RECURRING' END, status, currency,
    'Order #' || (100000 + i % 900000),
    CASE WHEN status IN ('captured', 'settled', 'settling') THEN 'automatic' ELSE 'manual' END,
    amount, CASE WHEN status IN ('failed', 'processing') THEN 0 ELSE amount END,
    CASE WHEN status IN ('captured', 'settled', 'settling') THEN amount ELSE 0 END,
    CASE WHEN status = 'voided' THEN amount ELSE 0 END,
    CASE WHEN status IN ('captured', 'settled') AND i % 10 = 0 THEN amount / 2 ELSE 0 END, 0,
    CASE WHEN status = 'capturing' THEN amount END"
AFTER_TOKEN="'$SOURCE', 'default: all payments to sandbox', 'sandbox',
    CASE WHEN status NOT IN ('failed', 'processing') THEN 'sbx_seed_' || i END,
    CASE WHEN status = 'failed' THEN '$DECLINED' END, NULL, NULL, NULL, NULL"
COLUMNS="id, account_id, version, created_at, updated_at, use_case, status, currency_code, reference, capture_mode,
    amount_requested, amount_authorized, amount_captured, amount_voided, amount_refunded, amount_refund_reserved,
    capture_requested, token_id, source, flow_matrix_rule, processor, processor_reference, failure_details,
    initial_payment_id, recurring_frequency, recurring_expiry, metadata"

seed_sqlite() {
    local db=$1 account=$2
    sqlite3 "$db" <<SQL
PRAGMA synchronous=OFF;
BEGIN;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $COUNT)
INSERT INTO payments ($COLUMNS)
SELECT randomblob(16), X'$account', 1, $NOW_US - i * $STEP_US, $NOW_US - i * $STEP_US, $REST, randomblob(16),
    $AFTER_TOKEN
FROM (SELECT i, $AMOUNT AS amount, $STATUS AS status, $CURRENCY AS currency
      FROM (SELECT i, $R AS r, $C AS c FROM s)) AS p;
INSERT INTO payment_day_counts (account_id, status, currency_code, day, shard, n)
SELECT account_id, status, currency_code, created_at / 86400000000, 0, COUNT(*) FROM payments GROUP BY 1, 2, 3, 4;
INSERT INTO payment_day_totals (account_id, day, shard, n)
SELECT account_id, created_at / 86400000000, 0, COUNT(*) FROM payments GROUP BY 1, 2;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}

seed_postgres() {
    local url=$1 account=$2
    psql "$url" -q -v ON_ERROR_STOP=1 <<SQL
SET synchronous_commit = off;
INSERT INTO payments ($COLUMNS)
SELECT gen_random_uuid(), '$account', 1, at, at, $REST, gen_random_uuid(), $AFTER_TOKEN
FROM (SELECT i, $AMOUNT AS amount, $STATUS AS status, $CURRENCY AS currency,
             'epoch'::timestamptz + ($NOW_US - i * $STEP_US) * interval '1 microsecond' AS at
      FROM (SELECT i, $R AS r, $C AS c FROM generate_series(1::bigint, $COUNT::bigint) AS i) AS s) AS p;
INSERT INTO payment_day_counts (account_id, status, currency_code, day, shard, n)
SELECT account_id, status, currency_code, floor(extract(epoch FROM created_at) / 86400)::bigint, 0, COUNT(*)
FROM payments GROUP BY 1, 2, 3, 4;
INSERT INTO payment_day_totals (account_id, day, shard, n)
SELECT account_id, floor(extract(epoch FROM created_at) / 86400)::bigint, 0, COUNT(*) FROM payments GROUP BY 1, 2;
VACUUM ANALYZE;
SQL
}

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
    created=$("$BIN" account create --name default --json 2>/dev/null)
    KEY=$(echo "$created" | sed 's/.*"api_key":"\([^"]*\)".*/\1/')
    account=$(echo "$created" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    echo "$backend: seeding $COUNT payments" >&2
    seed_started=$(date +%s.%N)
    case $backend in
        sqlite) seed_sqlite "$dir/strongroom.db" "${account//-/}" ;;
        postgres) seed_postgres "$URL" "$account" ;;
    esac
    seed_seconds=$(awk -v s="$seed_started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
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
