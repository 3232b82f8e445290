#!/usr/bin/env bash
# The fault suite of issue 13, one command: builds the release binary, runs the experiments that are not
# CI tests against it (bench/faults.py: Redis killed and paused, NUL bytes on PostgreSQL while others
# tokenize, 2,000 idle + 200 slow connections at `ulimit -n 1024`, a key over its rate limit), drives the
# CI tests that are experiments themselves (logs on /dev/full, a full tmpfs, a node SIGSTOPped past its
# lease during an import, a hanging receiver plus two imports while another tenant captures), and prints
# one table (with note lines under it); stderr shows progress only ("  done: <experiment>"). Needs
# PostgreSQL (STRONGROOM_BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres),
# redis-server and psql on the PATH; root for the tmpfs. Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${STRONGROOM_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --release --quiet --bin strongroom
BIN="$PWD/target/release/strongroom"
ROWS="$(mktemp)"
NOTES="$(mktemp)"
trap 'rm -f "$ROWS" "$NOTES"' EXIT

# record LINE: keeps a row for the one table printed at the end (or a `note: ` line for under it) and
# says on stderr, as progress only, which experiment is done; the table is the result.
record() {
    case $1 in
        note:*) printf '%s\n' "$1" >>"$NOTES" ;;
        *)
            printf '%s\n' "$1" >>"$ROWS"
            printf '  done: %s (%s)\n' "$(printf '%s' "$1" | cut -f1)" "$(printf '%s' "$1" | cut -f2)" >&2
            ;;
    esac
}

echo "== black-box experiments against $BIN" >&2
while IFS= read -r line; do
    record "$line"
done < <(python3 bench/faults.py "$BIN" "$@")

# drive EXPERIMENT BACKEND FILTER: runs the CI test(s) matching FILTER (exactly) and adds a row; the tests
# assert that nothing acknowledged is lost, doubled or wrong, so a pass is 0/0/0 and a failure says so.
drive() {
    local experiment=$1 backend=$2 filter=$3 out started took status recovery
    started=$(date +%s.%N)
    if out=$(STRONGROOM_TEST_POSTGRES_URL="$PG_URL" cargo test --quiet --test it "$filter" -- --exact --nocapture 2>&1); then
        status=0
    else
        status=1
    fi
    took=$(echo "$(date +%s.%N) - $started" | bc)
    recovery=$(echo "$out" | sed -n 's/.*capture done in \([0-9.]*[mµn]*s\).*/\1/p' | head -1)
    if ! echo "$out" | grep -q "test result: ok. [1-9]"; then
        status=1
    fi
    if echo "$out" | grep -q "skipped"; then
        record "$(printf '%s\t%s\t-\t-\t-\t-\tSKIPPED: %s' "$experiment" "$backend" \
            "$(echo "$out" | grep -m1 skipped | cut -c1-60)")"
        return
    fi
    if [ $status = 0 ]; then
        record "$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$experiment" "$backend" "(asserted)" 0 0 0 \
            "${recovery:-ok, test ${took%.*}s}")"
    else
        record "$(printf '%s\t%s\t-\t-\t-\tTEST FAILED\t-' "$experiment" "$backend")"
        echo "$out" | tail -30 >&2
    fi
}

if [ $# -eq 0 ]; then
    echo "== experiments that are CI tests" >&2
    drive "logs on /dev/full" sqlite disk_faults::logs_on_dev_full_neither_stop_nor_slow_the_server
    drive "full tmpfs: 503, recovers" sqlite disk_faults::a_full_data_disk_answers_503_and_recovers_when_space_returns
    drive "node SIGSTOPped past lease in import" postgres \
        imports::run::a_node_paused_past_its_lease_writes_nothing_after_another_took_over::postgres
    for backend in sqlite postgres; do
        drive "hanging receiver + 2 imports: capture" $backend \
            background_fairness::a_capture_is_not_delayed_by_a_hanging_receiver_and_two_imports::$backend
    done
fi

echo
{
    printf 'experiment\tbackend\tacknowledged\tlost\tduplicated\twrong\trecovery\n'
    cat "$ROWS"
} | column -t -s "$(printf '\t')"
if [ -s "$NOTES" ]; then
    echo
    cat "$NOTES"
fi
