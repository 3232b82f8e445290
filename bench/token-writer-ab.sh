#!/usr/bin/env bash
# Interleaved A/B of two builds' token writer: for each round and build, a fresh database and that
# build's server (no job workers), POST /cde-import from wrk without a webhook, then with one subscribed
# to token.created (the delivery job carrying its events joins each batch's commit; nothing is sent).
# Besides wrk's numbers it prints what the server's metrics say of the token writer during each run
# (strongroom_db_query_duration_seconds{op="insert_tokens"}: one observation per batch, from asking for
# the connection to the commit's end): batches, tokens per batch, a batch's mean time, and the share of
# the run the writer spent in batches. Odd rounds run A first, even rounds B, so that an even number of
# rounds gives each build each place equally often. It measures and prints; it asserts nothing.
#
#   BIN_A=/tmp/strongroom.old BIN_B=target/release/strongroom bench/token-writer-ab.sh
#   BIN_A=… BIN_B=… ROUNDS=5 CONNECTIONS=64 DURATION=6s BACKENDS="sqlite postgres" bench/token-writer-ab.sh
#   BIN_A=… BIN_B=… WEBHOOKS=none bench/token-writer-ab.sh    # only the runs without a webhook
# Nothing is built for the server: bench_setup takes BIN_A as its binary; each round's admin commands
# (subscribing the webhook) run the round's own build.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-6s}"
BACKENDS="${BACKENDS:-sqlite}"
CONNECTIONS="${CONNECTIONS:-16}"
ROUNDS="${ROUNDS:-5}"
# "none" (no webhook), "outbox" (one subscribed, its deliveries queued), or both in that order.
WEBHOOKS="${WEBHOOKS:-none outbox}"
source bench/lib.sh
ab_setup
source bench/receiver.sh
receiver_setup

# batches: "SUM COUNT" of the token writer's batch timings from the server's metrics listener.
batches() {
    curl -s "http://$METRICS_ADDR/metrics" |
        awk '/^strongroom_db_query_duration_seconds_(sum|count)\{op="insert_tokens"\}/ { v[$1 ~ /_sum/ ? 0 : 1] = $2 }
             END { print (v[0] == "" ? 0 : v[0]), (v[1] == "" ? 0 : v[1]) }'
}

row() { printf '%-9s %5s %5s %5s %-8s %8s %8s %9s %8s %7s %8s %6s\n' "$@"; }
printf '\n'
row backend round build conns webhook "req/s" "p99 ms" "us/token" batches "tok/b" "batch ms" busy
seconds=${DURATION%s}
for backend in $BACKENDS; do
    for round in $(seq 1 "$ROUNDS"); do
        # Odd rounds run A first, even rounds B: on PostgreSQL the second run of a round measured worse
        # whichever build it was (the cluster is shared by both runs; why, not known).
        order="A B"
        (( round % 2 )) || order="B A"
        for build in $order; do
            bin_var=BIN_$build
            dir="$WORK/$backend-$round-$build"
            mkdir -p "$dir"
            open_backend "$backend" "$dir"
            [ -n "$URL" ] || continue 3
            export STRONGROOM_DATA_DIR="$dir" STRONGROOM_DATABASE_URL="$URL" STRONGROOM_METRICS_LISTEN=127.0.0.1:0
            BIN=${!bin_var} STRONGROOM_WORKERS=0 start_server "$dir"
            METRICS_ADDR=$(grep -o 'metrics_addr=[0-9.:]*' "$dir/stderr" | head -1 | cut -d= -f2)
            server_account "$dir"
            # Untimed first: a new database's first writes grow its files.
            cde_import 16 3s >/dev/null
            for webhook in $WEBHOOKS; do
                # With the round's own build: its database may have migrations an older build lacks.
                [ "$webhook" = outbox ] && subscribe_receiver "${!bin_var}" "$ACCOUNT" "$dir/receiver.log"
                for conns in $CONNECTIONS; do
                    read -r sum0 count0 < <(batches)
                    ticks=$(cpu_ticks)
                    read -r rps _ p99 _ made _ < <(cde_import "$conns" "$DURATION")
                    ticks=$(( $(cpu_ticks) - ticks ))
                    read -r sum1 count1 < <(batches)
                    read -r n per ms busy < <(awk -v s0="$sum0" -v s1="$sum1" -v c0="$count0" -v c1="$count1" -v made="$made" -v d="$seconds" \
                        'BEGIN { n = c1 - c0; if (n < 1) n = 1; printf "%d %.1f %.3f %.0f%%\n", n, made / n, 1000 * (s1 - s0) / n, 100 * (s1 - s0) / d }')
                    row "$backend" "$round" "$build" "$conns" "$webhook" "$rps" "$p99" "$(us_per "$ticks" "$made")" "$n" "$per" "$ms" "$busy"
                done
            done
            stop_receiver
            stop_server
            unset STRONGROOM_DATA_DIR STRONGROOM_DATABASE_URL STRONGROOM_METRICS_LISTEN
            drop_backend
        done
    done
done
echo "(no job workers: with a webhook its deliveries are queued, not sent. us/token: CPU of the server with"
echo " its PostgreSQL backends per token made; batch ms: from asking for the connection to the commit's end;"
echo " busy: the share of the run spent in batches)"
