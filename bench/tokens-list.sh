#!/usr/bin/env bash
# GET /tokens at scale: seeds COUNT tokens (default 1,000,000) of one account straight into the database
# with SQL (spread over the last 365 days; their sealed card data is random bytes, since a listing never
# opens it), on SQLite and on PostgreSQL, then measures latency (p50/p99) and throughput of page 1 and a
# deep page in both sort orders and a one-day date filter with wrk. It measures and prints; it asserts
# nothing.
#
#   bench/tokens-list.sh
#   COUNT=200000 DURATION=5s BACKENDS=sqlite bench/tokens-list.sh
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
SPAN_US=$(( 365 * 86400 * 1000000 ))
DAY=$(date -u -d '-100 days' +%F)
DEEP_PAGE=$(( COUNT / 1000 ))
QUERIES=(
    "page 1, newest first|"
    "page 1, oldest first|sort=created_at%2Basc"
    "page $DEEP_PAGE, limit 500, newest first|page=$DEEP_PAGE&limit=500"
    "page $DEEP_PAGE, limit 500, oldest first|page=$DEEP_PAGE&limit=500&sort=created_at%2Basc"
    "from=to=$DAY, page 1|from=$DAY&to=$DAY"
    "from=to=$DAY, page 3, limit 500|from=$DAY&to=$DAY&page=3&limit=500"
)

seed_sqlite() {
    local db=$1 account=$2
    sqlite3 "$db" <<SQL
PRAGMA synchronous=OFF;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $COUNT)
INSERT INTO tokens (id, account_id, created_at, expiry_month, expiry_year, cardholder_name,
    issuer_identification_number, masked_account_number, account_number_last_four, account_number_length,
    scheme, status, fingerprint, sealed_card, business_key, import_provider, expires_at)
SELECT randomblob(16), X'$account', $NOW_US - i * ($SPAN_US / $COUNT), 1 + i % 12, 2031, 'Bench Holder',
    '42424242', '424242XXXXXX4242', '4242', 16, 'VISA', 'active', randomblob(32), randomblob(80), NULL, NULL, NULL
FROM s;
-- The server's batch writer keeps these counts; a seed written behind its back adds its own.
INSERT INTO token_day_counts (account_id, day, shard, n)
SELECT account_id, created_at / 86400000000, 0, COUNT(*) FROM tokens GROUP BY 1, 2;
SQL
}

seed_postgres() {
    local url=$1 account=$2
    psql "$url" -q <<SQL
SET synchronous_commit = off;
INSERT INTO tokens (id, account_id, created_at, expiry_month, expiry_year, cardholder_name,
    issuer_identification_number, masked_account_number, account_number_last_four, account_number_length,
    scheme, status, fingerprint, sealed_card, business_key, import_provider, expires_at)
SELECT gen_random_uuid(), '$account', to_timestamp(($NOW_US - i * ($SPAN_US / $COUNT)) / 1000000.0),
    1 + i % 12, 2031, 'Bench Holder', '42424242', '424242XXXXXX4242', '4242', 16, 'VISA', 'active',
    sha256(i::text::bytea), sha256(i::text::bytea) || sha256(i::text::bytea), NULL, NULL, NULL
FROM generate_series(1, $COUNT) AS i;
-- The server's batch writer keeps these counts; a seed written behind its back adds its own.
INSERT INTO token_day_counts (account_id, day, shard, n)
SELECT account_id, floor(extract(epoch FROM created_at) / 86400)::BIGINT, 0, COUNT(*) FROM tokens GROUP BY 1, 2;
VACUUM ANALYZE;
SQL
}

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
    created=$("$BIN" account create --name bench-tokens --json 2>/dev/null)
    KEY=$(echo "$created" | sed 's/.*"api_key":"\([^"]*\)".*/\1/')
    account=$(echo "$created" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    echo "$backend: seeding $COUNT tokens" >&2
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
        total=$(curl -s -H "X-API-Key: $KEY" "$BASE/tokens?$query" | sed 's/.*"total_items":\([0-9]*\).*/\1/')
        read -r rps p50 p99 errors < <(measure "$BASE/tokens?$query")
        RESULTS+=("$(printf '%-9s %-40s %10s %9s %9s %9s %7s   (seeded in %s s)' "$backend" "$name" "$total" "$rps" "$p50" "$p99" "$errors" "$seed_seconds")")
    done
    stop_server
    drop_backend
done

printf '\n%s tokens in one account, wrk %s connections for %s each\n' "$COUNT" "$CONNS" "$DURATION"
printf '%-9s %-40s %10s %9s %9s %9s %7s\n' backend query total_items "req/s" "p50 ms" "p99 ms" errors
printf '%s\n' "${RESULTS[@]}"
