#!/usr/bin/env python3
"""Fault experiments of issue 13 against the release binary (stdlib only). Each experiment is short;
every row reports requests acknowledged (2xx), lost (acknowledged but not readable after), duplicated
(made but never acknowledged: half-made writes), wrong (an answer that breaks the promise: a 5xx other
than 503, a refusal where the client should be served, or an answer slower than allowed) and recovery
(time from the fault's end to the first success). Prints rows as TSV on stdout for faults.sh, and
notes for under the table as lines starting `note: `."""

import json, os, resource, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request, urllib.error

BIN = sys.argv[1]
PG_ADMIN = os.environ.get("STRONGROOM_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
ROWS = []


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def call(base, method, path, key=None, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if key:
        req.add_header("x-api-key", key)
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    except Exception:
        status, text = 0, b""
    took = time.monotonic() - start
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return status, parsed, took


class Server:
    def __init__(self, name, env, ulimit=None, stdout=None, stderr=None):
        self.dir = tempfile.mkdtemp(prefix=f"faults-{name}-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, STRONGROOM_DATA_DIR=self.dir, STRONGROOM_LISTEN=f"127.0.0.1:{self.port}",
                        STRONGROOM_STRIPE_RATE_LIMIT="0", **env)
        self.pg_db = None
        if env.get("STRONGROOM_DATABASE_URL") == "postgres":
            self.pg_db = f"strongroom_faults_{os.getpid()}_{name.replace('-', '_')}"
            subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {self.pg_db}"], check=True, capture_output=True)
            self.env["STRONGROOM_DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.pg_db
        cmd = [BIN, "serve"]
        if ulimit:
            cmd = ["bash", "-c", f"ulimit -n {ulimit}; exec \"$0\" serve", BIN]
        self.out = open(os.path.join(self.dir, "stdout"), "w") if stdout is None else stdout
        self.err = open(os.path.join(self.dir, "stderr"), "w") if stderr is None else stderr
        # The first start prints the default key; read it from the account command instead.
        self.keys = {}
        subprocess.run([BIN, "migrate"], env=self.env, check=True, capture_output=True)
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.out, stderr=self.err)
        for _ in range(200):
            if call(self.base, "GET", "/health", timeout=1)[0] == 200:
                break
            time.sleep(0.05)

    def account(self, name):
        out = subprocess.run([BIN, "account", "create", "--name", name, "--feature", "cde_import"],
                             env=self.env, check=True, capture_output=True, text=True).stdout
        return out.split("(shown once):")[1].split()[0]

    def stop(self):
        self.proc.send_signal(signal.SIGKILL); self.proc.wait()
        if self.pg_db:
            subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)"], capture_output=True)


def card(n, code=None, name="Jane Holder"):
    pan = luhn(f"411111{n:09d}")
    body = {"account_number": pan, "expiry_month": 4, "expiry_year": 2031, "cardholder_name": name}
    if code:
        body["security_code"] = code
    return body


def luhn(body):
    total = 0
    for i, d in enumerate(reversed(body)):
        d = int(d)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def row(experiment, backend, acked, lost, dup, wrong, recovery):
    ROWS.append((experiment, backend, acked, lost, dup, wrong, recovery))
    print("\t".join(str(x) for x in ROWS[-1]), flush=True)


def note(text):
    """A line printed under the table (faults.sh sorts lines starting `note:` out of the rows)."""
    print(f"note: {text}", flush=True)


def count_tokens(server, key):
    n = 0
    for page in range(1, 1000):
        st, body, _ = call(server.base, "GET", f"/tokens?limit=500&page={page}", key)
        data = (body or {}).get("data") or [] if st == 200 else []
        if not data:
            return n
        n += len(data)
    return n


def tokenize_load(server, key, seconds, threads, make_body, limit_s, events, stop_at=None):
    """Tokenizes from `threads` threads for `seconds`; records (time, status, took, id)."""
    results, lock = [], threading.Lock()
    end = time.monotonic() + seconds
    def worker(t):
        i = 0
        while time.monotonic() < end:
            i += 1
            st, body, took = call(server.base, "POST", "/cde-import", key, make_body(t * 100000 + i), timeout=limit_s + 5)
            with lock:
                results.append((time.monotonic(), st, took, (body or {}).get("id") if st == 200 else None))
    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts: t.start()
    for at, action in events:
        time.sleep(max(0, at - (seconds - (end - time.monotonic()))))
        action()
    for t in ts: t.join()
    return results


def redis_experiment(kind):
    port = free_port()
    rdir = tempfile.mkdtemp(prefix="faults-redis-")
    start_redis = lambda: subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", rdir],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = [start_redis()]
    time.sleep(0.3)
    server = Server(f"redis-{kind}", {"STRONGROOM_REDIS_URL": f"redis://127.0.0.1:{port}"})
    key = server.account("a")
    marks = {}
    def fault():
        marks["start"] = time.monotonic()
        if kind == "killed":
            redis[0].send_signal(signal.SIGKILL); redis[0].wait()
        else:
            redis[0].send_signal(signal.SIGSTOP)
    def heal():
        marks["end"] = time.monotonic()
        if kind == "killed":
            redis[0] = start_redis()
        else:
            redis[0].send_signal(signal.SIGCONT)
    results = tokenize_load(server, key, 7, 4, lambda n: card(n, "737"), 2, [(1.5, fault), (4.0, heal)])
    acked = [r for r in results if r[1] == 200]
    lost = sum(1 for r in acked if call(server.base, "GET", f"/tokens/{r[3]}", key)[0] != 200)
    dup = max(0, count_tokens(server, key) - len(acked))
    wrong = sum(1 for r in results if r[1] not in (200, 503) or r[2] > 2.0)
    after = [r[0] for r in acked if r[0] > marks["end"]]
    recovery = f"{after[0] - marks['end']:.2f}s" if after else "never"
    slowest = max(r[2] for r in results)
    row(f"redis {kind} 2.5 s (max answer {slowest:.2f}s)", "sqlite", len(acked), lost, dup, wrong, recovery)
    server.stop(); redis[0].send_signal(signal.SIGCONT); redis[0].kill(); redis[0].wait()


def nul_attacks(server, key):
    """Every free-text input the API takes (tests/it/text_fields.rs) as (field, request, expected path):
    each request holds a NUL in that one field and nothing else wrong, so a 422 must name that field.
    The payments the attacks aim at are the attacker's own, made once here through the built-in sandbox."""
    st, tok, _ = call(server.base, "POST", "/cde-import", key, card(990000))
    if st != 200:
        raise RuntimeError(f"attacker's token: {st}")
    def payment(capture, reference="Order 1", metadata=None):
        body = {"amount": 1000, "currency_code": "EUR", "reference": reference, "capture": capture,
                "source": {"type": "token", "token_id": tok["id"]}}
        if metadata is not None:
            body["metadata"] = metadata
        return body
    made = {}
    for capture in ("automatic", "manual"):
        st, paid, _ = call(server.base, "POST", "/payments/one-off", key, payment(capture))
        if st != 200:
            raise RuntimeError(f"attacker's {capture} payment: {st}")
        made[capture] = paid["id"]
    nul = "a\u0000b"
    return [
        ("cde-import cardholder_name", lambda i: ("/cde-import", card(900000 + i, name="Eve\u0000Attacker")),
         "$.cardholder_name"),
        ("cde-import account_number", lambda i: ("/cde-import", dict(card(900000 + i), account_number="4111\u00001111")),
         "$.account_number"),
        ("cde-import security_code", lambda i: ("/cde-import", card(900000 + i, code="7\u000037")), "$.security_code"),
        ("payment reference", lambda i: ("/payments/one-off", payment("automatic", reference=f"Order {i}\u0000")),
         "$.reference"),
        ("payment metadata value", lambda i: ("/payments/one-off", payment("automatic", metadata={"order": nul})),
         "$.metadata.order"),
        ("payment metadata key", lambda i: ("/payments/one-off", payment("automatic", metadata={nul: "v"})),
         "$.metadata"),
        ("capture reference", lambda i: (f"/payments/{made['manual']}/capture", {"amount": 100, "reference": nul}),
         "$.reference"),
        ("refund reference", lambda i: (f"/payments/{made['automatic']}/refunds", {"amount": 100, "reference": nul}),
         "$.reference"),
    ]


def nul_experiment():
    server = Server("nul", {"STRONGROOM_DATABASE_URL": "postgres"})
    victim, attacker = server.account("victim"), server.account("attacker")
    attacks = nul_attacks(server, attacker)
    counts = {name: [0, 0] for name, _, _ in attacks}  # field -> [attacks, answered other than 422 at its path]
    lock = threading.Lock()
    stop = time.monotonic() + 5
    def attack(t):
        i = t  # the two attackers start on different fields and rotate over all of them
        while time.monotonic() < stop:
            name, make, path = attacks[i % len(attacks)]
            url, body = make(i)
            st, answer, _ = call(server.base, "POST", url, attacker, body)
            paths = [e.get("path") for e in (answer or {}).get("validation_errors") or []]
            with lock:
                counts[name][0] += 1
                counts[name][1] += st != 422 or paths != [path]
            i += 1
    ts = [threading.Thread(target=attack, args=(t,)) for t in range(2)]
    for t in ts: t.start()
    results = tokenize_load(server, victim, 5, 4, lambda n: card(n), 2, [])
    for t in ts: t.join()
    acked = [r for r in results if r[1] == 200]
    lost = sum(1 for r in acked if call(server.base, "GET", f"/tokens/{r[3]}", victim)[0] != 200)
    dup = max(0, count_tokens(server, victim) - len(acked))
    refused_right = all(bad == 0 for _, bad in counts.values())
    wrong = sum(1 for r in results if r[1] != 200) + sum(bad for _, bad in counts.values())
    total = sum(n for n, _ in counts.values())
    row(f"NUL in {len(attacks)} text fields ({total} attacks, " + ("all 422 at their path)" if refused_right else "NOT all 422)"),
        "postgres", len(acked), lost, dup, wrong, "-")
    note("NUL attacks per field (attacks / answered other than 422 at the field's path): " +
         ", ".join(f"{name} {n}/{bad}" for name, (n, bad) in counts.items()))
    server.stop()


def connections_experiment():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    server = Server("conns", {"STRONGROOM_HEADER_TIMEOUT_SECONDS": "2", "STRONGROOM_BODY_TIMEOUT_SECONDS": "2"}, ulimit=1024)
    key = server.account("a")
    idle, slow = [], []
    for _ in range(2000):
        s = socket.socket(); s.setblocking(True); s.settimeout(2)
        try:
            s.connect(("127.0.0.1", server.port)); idle.append(s)
        except OSError:
            s.close()
    for _ in range(200):
        s = socket.socket(); s.settimeout(2)
        try:
            s.connect(("127.0.0.1", server.port)); s.send(b"GET /health HTTP/1.1\r\nHost: x\r\n"); slow.append(s)
        except OSError:
            s.close()
    flood_end = time.monotonic()
    # New clients, while the flood holds every slot.
    served, wrong, first = 0, 0, None
    for i in range(20):
        st, _, took = call(server.base, "GET", "/tokens?limit=1", key, timeout=10)
        if st == 200:
            served += 1
            first = first or (time.monotonic() - flood_end)
        else:
            wrong += 1
    time.sleep(2.5)
    closed = 0
    for s in idle + slow:
        try:
            s.settimeout(0.01)
            if s.recv(1) == b"":
                closed += 1
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            closed += 1
        s.close()
    row(f"{len(idle)} idle + {len(slow)} slow conns, ulimit 1024 ({closed} closed by timeout)", "sqlite",
        served, 0, 0, wrong, f"{first:.2f}s" if first else "never")
    server.stop()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rate_limit_experiment():
    server = Server("rate", {"STRONGROOM_RATE_LIMIT_PER_SECOND": "20"})
    noisy, quiet = server.account("noisy"), server.account("quiet")
    over = {"429": 0, "n": 0}
    stop = time.monotonic() + 3
    def hammer():
        while time.monotonic() < stop:
            st, _, _ = call(server.base, "GET", "/tokens?limit=1", noisy)
            over["n"] += 1
            over["429"] += st == 429
    ts = [threading.Thread(target=hammer) for _ in range(3)]
    for t in ts: t.start()
    acked, wrong = 0, 0
    while time.monotonic() < stop:
        st, _, _ = call(server.base, "GET", "/tokens?limit=1", quiet)
        acked += st == 200
        wrong += st != 200
        time.sleep(0.1)
    for t in ts: t.join()
    row(f"key over its rate ({over['429']}/{over['n']} of its requests 429)", "sqlite", acked, 0, 0, wrong, "-")
    server.stop()


EXPERIMENTS = {"redis-killed": lambda: redis_experiment("killed"), "redis-paused": lambda: redis_experiment("paused"),
               "nul": nul_experiment, "connections": connections_experiment, "rate-limit": rate_limit_experiment}

if __name__ == "__main__":
    for name in (sys.argv[2:] or EXPERIMENTS):
        try:
            EXPERIMENTS[name]()
        except Exception as e:  # a broken experiment is a row, not a crash of the suite
            row(name, "-", "-", "-", "-", f"error: {e}", "-")
