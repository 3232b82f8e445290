# Shared by the benchmark scripts: set-up and clean-up, a database per backend, wrk and the summary of
# its output, and starting the release server. Scripts set BACKENDS and may set
# STRONGROOM_BENCH_POSTGRES_URL before sourcing it.

PG_ADMIN_URL="${STRONGROOM_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
SERVER_PID=""
PG_DB=""

# Installs wrk if needed, builds the release binary (BIN) and makes a work directory (WORK) that is
# removed, with any server and benchmark database, on exit. STRONGROOM_BENCH_BIN names another binary
# to measure instead (an A/B against an older build), and then nothing is built.
bench_setup() {
    ensure_wrk
    if [ -n "${STRONGROOM_BENCH_BIN:-}" ]; then
        BIN="$STRONGROOM_BENCH_BIN"
    else
        cargo build --release --quiet
        BIN="$PWD/target/release/strongroom"
    fi
    WORK="$(mktemp -d)"
    trap bench_cleanup EXIT
}

# ab_setup: bench_setup for the scripts that compare two builds. BIN_A and BIN_B name them (made
# absolute here); nothing is built for the server, and BIN is BIN_A (for the admin commands).
ab_setup() {
    if [ -z "${BIN_A:-}" ] || [ -z "${BIN_B:-}" ]; then
        echo "set BIN_A and BIN_B to the two strongroom binaries to compare" >&2
        exit 2
    fi
    BIN_A=$(realpath "$BIN_A")
    BIN_B=$(realpath "$BIN_B")
    STRONGROOM_BENCH_BIN=$BIN_A
    bench_setup
}

bench_cleanup() {
    stop_server
    drop_backend
    rm -rf "$WORK"
}

# open_backend BACKEND DIR: sets URL to a fresh database of BACKEND (PostgreSQL: one made for this run,
# dropped by drop_backend), or to nothing if the backend cannot be reached.
open_backend() {
    URL=""
    case $1 in
        sqlite) URL="sqlite://$2/strongroom.db" ;;
        postgres)
            if ! psql "$PG_ADMIN_URL" -qc 'SELECT 1' >/dev/null 2>&1; then
                echo "postgres: not reachable at $PG_ADMIN_URL, skipped" >&2
                return 0
            fi
            PG_DB="strongroom_bench_$$"
            psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null
            URL="${PG_ADMIN_URL%/*}/$PG_DB" ;;
        *) echo "unknown backend $1" >&2; exit 2 ;;
    esac
}

# Drops the PostgreSQL database of this run, if there is one.
drop_backend() {
    if [ -n "$PG_DB" ]; then
        psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
        PG_DB=""
    fi
}

ensure_wrk() {
    if ! command -v wrk >/dev/null 2>&1; then
        echo "installing wrk" >&2
        (apt-get install -y wrk || (apt-get update && apt-get install -y wrk)) >/dev/null
    fi
}

# Reads wrk --latency output; prints "req/s p50_ms p99_ms non_2xx".
wrk_summary() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000;
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0;
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000;
            return v;
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec/ { rps = $2 }
        /Non-2xx/ { errors = $NF }
        /Socket errors/ { errors = errors "+sock" }
        END { printf "%.0f %.2f %.2f %s\n", rps, p50, p99, (errors == "" ? 0 : errors) }'
}

# server_p99 LOG FROM ROUTE: the p99, in ms, of the latencies the server logged (`latency_us`) for ROUTE in
# LOG after its line FROM, or "-". That is the handler's time only: a request that waited for a worker
# thread before it was read counts in wrk's p99 (which also corrects for coordinated omission, README
# "Benchmarks") but not here, so the two apart point at stalls outside the handlers.
server_p99() {
    # awk and sort only: a grep that matched nothing would fail the pipeline and, under `set -e`, the caller.
    tail -n +"$(( $2 + 1 ))" "$1" |
        awk -v route="route=$3 " 'index($0, route) && match($0, /latency_us=[0-9]+/) { print substr($0, RSTART + 11, RLENGTH - 11) }' |
        sort -n |
        awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f\n", v[i] / 1000 }'
}

# start_server DIR: runs `$BIN serve` (settings from the environment) on a free port, logs in DIR;
# sets SERVER_PID and BASE.
start_server() {
    local dir=$1
    STRONGROOM_LISTEN=127.0.0.1:0 "$BIN" serve >"$dir/stdout" 2>"$dir/stderr" &
    SERVER_PID=$!
    BASE=""
    for _ in $(seq 1 100); do
        BASE=$(grep -o 'addr=[0-9.:]*' "$dir/stderr" 2>/dev/null | head -1 | sed 's/addr=/http:\/\//') || true
        [ -n "$BASE" ] && return 0
        sleep 0.1
    done
    echo "the server did not start:" >&2
    cat "$dir/stderr" >&2
    exit 1
}

# server_account DIR: KEY, the API key of the account the server made and printed (to DIR/stdout) on
# its first start, and ACCOUNT, that account's id.
server_account() {
    KEY=$(grep -o 'sr_[A-Za-z0-9_-]*' "$1/stdout" | head -1)
    ACCOUNT=$(curl -s -H "X-API-Key: $KEY" "$BASE/account" | sed 's/.*"id":"\([^"]*\)".*/\1/')
}

stop_server() {
    if [ -n "${SERVER_PID:-}" ]; then
        kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

# pid_ticks PID: CPU clock ticks (utime + stime) used so far by one process; TICK_US is a tick in
# microseconds.
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
pid_ticks() {
    # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}

# cpu_ticks: the ticks used so far by the server and, on PostgreSQL, by the backends connected to this
# run's database.
cpu_ticks() {
    local pids=$SERVER_PID
    if [ -n "$PG_DB" ]; then
        pids="$pids $(psql "$PG_ADMIN_URL" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '$PG_DB'" 2>/dev/null)"
    fi
    for pid in $pids; do pid_ticks "$pid"; done | awk '{ s += $1 } END { print s + 0 }'
}

# us_per TICKS COUNT: microseconds of CPU per item (a token, an event), or - for none.
us_per() { awk -v t="$1" -v n="$2" -v us="$TICK_US" 'BEGIN { if (n > 0) printf "%.1f", t * us / n; else print "-" }'; }
