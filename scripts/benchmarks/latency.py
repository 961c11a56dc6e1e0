"""Decision → action start latency (issue 27): how long after a deciding vote its action starts,
under `vigilo run` on a PostgreSQL state store, with one process and with a fleet of three on
the same store.

The project: a SQLite source of N items (200; --quick 100), one query selecting them with
`-- remediation: fix` and no schedule, and remediation `fix`: an approval (console notifier,
approver alice, default options approve/deny, `recheck` left at its default, true) and one
`http` action `when = "approve"` POSTing to a stand-in on this machine (its own process, which
answers 200 at once and records when each call arrived). `vigilo scan` opens the N approvals
first; then the `vigilo run` processes start, each serving HTTP on its own port with a
`[server] secret`.

Votes go the way a person's do when they click a link of an approval message: a POST of the
approval page's form (`token` = the approver's link token, computed here from the secret
exactly as src/token.rs issues it; `option=approve`) to `/approvals/ID`, one every 50 ms, each
deciding its approval (one approver). With three processes the votes go round-robin to the
three servers (as a load balancer would send them), so two votes in three are decided in a
process that then has to hear of it through PostgreSQL's `NOTIFY vigilo_work`; the process
that acts is whichever claims the run first.

One clock: every timestamp is this machine's real-time clock. The vote's time is the
approval's `decided_at`, which vigilo stamps inside the deciding transaction just before
it commits (so the figure slightly over-states the latency from the commit); the action's
start is the action's `started_at`, stamped in the transaction that marks it started,
committed before the call. A trigger the benchmark adds to the `actions` table records which
process started each action (`claimed_by` at that moment), so the fleet's figures can be split
into "decided and acted on in the same process" and "acted on by another process, woken by
NOTIFY". The stand-in's arrival time gives, beside it, decision → call received.

Each run uses a fresh store and fresh processes; p50 and p99 are per run, and the table shows
the median over runs (and the worst run's p99).
"""

import base64
import hashlib
import hmac
import http.server
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

from .common import (VIGILO, Result, fresh_dir, fresh_pg_db, free_port, load_average, log, median,
                     percentile, pg_rows, psql, start_runs, stop_runs, write_project)

STATE_DB = "vigilo_bench_latency"
SECRET = "bench-latency-secret"
SPACING = 0.050  # seconds between votes


def token(approval_id, approver):
    """An approval link token, as src/token.rs `issue` makes it (no deadline: EXPIRES 0)."""
    payload = f"{approval_id}.{approver}.0".encode()
    sig = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + sig


def standin(port, log_path, ready):
    """The action target: answers 200 at once, appends `PATH TIME` for each call."""
    out = open(log_path, "a", buffering=1)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            at = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            with lock:
                out.write(f"{self.path} {at:.6f}\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ready.set()
    server.serve_forever()


def project(n, state_url, target_port):
    d = fresh_dir("latency")
    config = (
        f'[state]\nurl = "{state_url}"\n\n'
        '[server]\nlisten = "${VIGILO_LISTEN}"\n'
        f'secret = "{SECRET}"\n\n'
        '[database.src]\nurl = "sqlite://src.db"\n\n'
        '[notifier.ops]\nnotify = [{ integration = "console" }]\n\n'
        '[approver.alice]\nemail = "alice@example.com"\n'
    )
    query = ("-- title: Latency items\n-- database: src\n-- primary_key: id\n"
             "-- remediation: fix\n-- severity: high\nselect id, owner from items\n")
    remediation = (
        'title = "Latency benchmark"\n\n[approval]\nnotifier = "ops"\n'
        'subject = "Fix {{ row.id }}?"\nprompt = "Item {{ row.id }} of {{ row.owner }}."\n'
        'approvers = ["alice"]\n\n'
        '[[action]]\nwhen = "approve"\ntype = "http"\n'
        f'url = "http://127.0.0.1:{target_port}/hit/{{{{ approval.id }}}}"\n'
    )
    write_project(d, config, {"items": query}, {"fix": remediation})
    db = sqlite3.connect(d / "src.db")
    db.execute("create table items (id text primary key, owner text)")
    db.executemany("insert into items values (?, ?)",
                   ((f"item-{i:04d}", f"user{i % 17}") for i in range(n)))
    db.commit()
    db.close()
    return d


def vote(port, approval_id):
    body = urllib.parse.urlencode({"token": token(approval_id, "alice"), "option": "approve"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/approvals/{approval_id}", data=body,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        page = r.read().decode(errors="replace")
    if "Your vote decided it" not in page:
        raise RuntimeError(f"vote on approval {approval_id} did not decide it")


def one_run(n, processes):
    target_port = free_port()
    state = fresh_pg_db(STATE_DB)
    d = project(n, state, target_port)
    arrivals_path = d / "arrivals.txt"
    ready = multiprocessing.Event()
    target = multiprocessing.Process(target=standin, args=(target_port, arrivals_path, ready),
                                     daemon=True)
    target.start()
    ready.wait(10)
    env = {**os.environ, "VIGILO_LISTEN": "127.0.0.1:0", "RUST_LOG": "vigilo=warn"}
    runs = []
    try:
        out = subprocess.run([VIGILO, "--dir", d, "scan"], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"latency: vigilo scan failed ({out.returncode}):\n{out.stderr[-3000:]}")
        psql(state, """
CREATE TABLE bench_started (action_id bigint, by text, at timestamptz);
CREATE FUNCTION bench_started() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bench_started VALUES (NEW.id, NEW.claimed_by, clock_timestamp());
  RETURN NEW;
END $$;
CREATE TRIGGER bench_started AFTER UPDATE OF state ON actions
  FOR EACH ROW WHEN (NEW.state = 'started' AND OLD.state <> 'started')
  EXECUTE FUNCTION bench_started();""")
        approvals = [int(r[0]) for r in pg_rows(state, "SELECT id FROM approvals WHERE status = 'pending' ORDER BY id")]
        if len(approvals) != n:
            sys.exit(f"latency: {len(approvals)} approvals opened, {n} expected")
        runs = start_runs(d, env, processes)
        time.sleep(1.5)  # every process past its first steps, listening
        served = {}
        t0 = time.monotonic()
        for i, a in enumerate(approvals):
            time.sleep(max(0.0, t0 + i * SPACING - time.monotonic()))
            r = runs[i % len(runs)]
            vote(r.port, a)
            served[a] = r.proc.pid
        deadline = time.time() + 60
        while time.time() < deadline:
            left, done = pg_rows(state, "SELECT count(*) FILTER (WHERE state IN ('pending', 'started')), "
                                        "count(*) FROM actions")[0]
            if left == "0" and int(done) == n:
                break
            time.sleep(0.2)
    finally:
        stop_runs(runs)
        target.terminate()
        target.join(5)
    data = pg_rows(state, """
SELECT a.id, extract(epoch FROM a.decided_at), extract(epoch FROM ac.started_at), b.by, ac.state
FROM approvals a JOIN actions ac ON ac.approval_id = a.id
LEFT JOIN bench_started b ON b.action_id = ac.id
ORDER BY a.id""")
    arrivals = {}
    for line in arrivals_path.read_text().splitlines():
        path, at = line.split()
        arrivals.setdefault(int(path.rsplit("/", 1)[1]), float(at))
    lat, same, other, arrive = [], [], [], []
    states = {}
    for aid, decided, started, by, st in data:
        states[st] = states.get(st, 0) + 1
        ms = (float(started) - float(decided)) * 1000
        lat.append(ms)
        pid = int(by.rsplit(":", 1)[1]) if by else None
        (same if pid == served.get(int(aid)) else other).append(ms)
        if int(aid) in arrivals:
            arrive.append((arrivals[int(aid)] - float(decided)) * 1000)
    lat.sort(), same.sort(), other.sort(), arrive.sort()
    r = {
        "n": len(lat),
        "states": states,
        "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": lat[-1] if lat else float("nan"),
        "same": len(same), "same_p50": percentile(same, 50), "same_p99": percentile(same, 99),
        "other": len(other), "other_p50": percentile(other, 50), "other_p99": percentile(other, 99),
        "arrive_p50": percentile(arrive, 50), "arrive_p99": percentile(arrive, 99),
    }
    log(f"latency: {processes} process(es): {r['n']}/{n} actions {r['states']}; decided → started "
        f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms; same process "
        f"{r['same']} (p50 {r['same_p50']:.1f}, p99 {r['same_p99']:.1f}), another process "
        f"{r['other']} (p50 {r['other_p50']:.1f}, p99 {r['other_p99']:.1f}); decided → call "
        f"received p50 {r['arrive_p50']:.1f} ms, p99 {r['arrive_p99']:.1f} ms")
    return r


def run(quick, runs):
    n = 100 if quick else 200
    runs = min(runs, 3) if quick else runs
    results = []
    log(f"latency: {n} decisions, one every {SPACING * 1000:.0f} ms (web approval form), "
        f"{runs} run(s) each with 1 and 3 `vigilo run` processes on one PostgreSQL store; {load_average()}")
    for processes in (1, 3):
        rs = [one_run(n, processes) for _ in range(runs)]
        p50, p99 = median([r["p50"] for r in rs]), median([r["p99"] for r in rs])
        worst = max(r["p99"] for r in rs)
        who = "one process" if processes == 1 else "fleet of 3"
        extra = ""
        if processes > 1:
            extra = (f"; acted on in the deciding process: p50 {median([r['same_p50'] for r in rs]):.1f} ms, "
                     f"in another (NOTIFY): p50 {median([r['other_p50'] for r in rs]):.1f} ms, "
                     f"p99 {median([r['other_p99'] for r in rs]):.1f} ms")
        results += [
            Result(f"latency, {who}: vote (web form) → action started, p50 ({n} decisions every "
                   f"{SPACING * 1000:.0f} ms, median of {runs})",
                   f"{p50:.1f} ms", "", None, "p50 ≤ 20 ms", p50 <= 20),
            Result(f"latency, {who}: vote → action started, p99 (worst run {worst:.1f} ms; "
                   f"→ call received p50 {median([r['arrive_p50'] for r in rs]):.1f} ms){extra}",
                   f"{p99:.1f} ms", "", None, "p99 ≤ 100 ms", p99 <= 100),
        ]
    log(f"latency: done; {load_average()}")
    return results


if __name__ == "__main__":
    for r in run("--quick" in sys.argv, 1):
        print(r.row())
