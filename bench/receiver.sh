# Shared by the webhook benchmarks (webhooks.sh, webhooks-ab.sh), sourced after lib.sh and bench_setup:
# the bench receiver (examples/webhook_receiver.rs, which checks every signature), a webhook subscribed
# to it, and POST /cde-import from wrk.

# Builds the receiver (RECEIVER_BIN) and stops it, with the rest of lib.sh's clean-up, on exit.
receiver_setup() {
    # lib.sh builds into ./target; honour CARGO_TARGET_DIR like cargo does.
    local target="${CARGO_TARGET_DIR:-$PWD/target}"
    cargo build --release --quiet --example webhook_receiver
    RECEIVER_BIN="$target/release/examples/webhook_receiver"
    RECEIVER_PID=""
    trap 'stop_receiver; bench_cleanup' EXIT
}

stop_receiver() {
    if [ -n "$RECEIVER_PID" ]; then
        kill "$RECEIVER_PID" 2>/dev/null && wait "$RECEIVER_PID" 2>/dev/null || true
    fi
    RECEIVER_PID=""
}

# start_receiver ADDR LOG [KEY]: sets RECEIVER_PID and RECEIVER (host:port).
start_receiver() {
    WEBHOOK_KEY="${3:-}" "$RECEIVER_BIN" "$1" >"$2" 2>&1 &
    RECEIVER_PID=$!
    RECEIVER=""
    for _ in $(seq 1 100); do
        RECEIVER=$(grep -o 'listening on [0-9.:]*' "$2" 2>/dev/null | awk '{print $3}') || true
        [ -n "$RECEIVER" ] && return 0
        sleep 0.05
    done
    echo "the receiver did not start" >&2
    exit 1
}

# subscribe_receiver ADMIN_BIN ACCOUNT LOG: starts a receiver on a free port, subscribes a webhook of
# ACCOUNT to token.created there (with ADMIN_BIN's `webhook add`), restarts the receiver on that port
# with the webhook's signing key, and waits out the subscription cache window.
subscribe_receiver() {
    local hook key addr
    start_receiver 127.0.0.1:0 "$3"
    hook=$("$1" webhook add --account "$2" --url "http://$RECEIVER/hook" --events token.created --json)
    key=$(echo "$hook" | sed 's/.*"signing_key":"\([^"]*\)".*/\1/')
    addr=$RECEIVER
    stop_receiver
    start_receiver "$addr" "$3" "$key"
    sleep 2.5
}

received() { curl -s "http://$RECEIVER/stats" | sed 's/.*"received":\([0-9]*\).*/\1/'; }
bad_signatures() { curl -s "http://$RECEIVER/stats" | sed 's/.*"bad_signatures":\([0-9]*\).*/\1/'; }

# cde_import CONNS DURATION: prints "req/s p50_ms p99_ms errors requests server_p99_ms" (KEY, BASE and
# the server's log directory `dir` from the caller; `server_p99` in lib.sh).
cde_import() {
    local out from
    from=$(wc -l <"$dir/stderr")
    if ! out=$(STRONGROOM_BENCH_KEY="$KEY" wrk -t"$(( $1 < 2 ? $1 : 2 ))" -c"$1" -d"$2" --latency -s bench/cde_import.lua "$BASE/cde-import"); then
        echo "wrk failed against $BASE; the server's log ends:" >&2
        tail -20 "$dir/stderr" >&2
        exit 1
    fi
    echo "$(echo "$out" | wrk_summary) $(echo "$out" | awk '/requests in/ { print $1 }') $(server_p99 "$dir/stderr" "$from" /cde-import)"
}
