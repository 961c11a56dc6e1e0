"""Fleet throughput (issue 27): scheduled query runs per second of 1 against 3 `vigilo run`
processes on one PostgreSQL state store, on a source-bound workload.

The workload: 200 queries, each `-- schedule: 1s`, each selecting its own 3 rows of one
PostgreSQL source table through `(SELECT pg_sleep(0.1))`, so every run holds a source
connection for 100 ms whatever vigilo does. Each process runs at most `[scheduler]
max_concurrent` = 4 queries at once (the default, written out), so one process can finish at
most 4 / 0.1 s = 40 runs a second: the source's latency bounds it, not vigilo's CPU. The
schedule asks for 200 runs a second, more than three processes can give (120), so every
process stays busy; each tick is claimed once in the store (table `ticks`), and a process
whose claim finds the tick taken moves on to its next query.

Each run: a fresh state store and source, the processes started together (their stderr in
the benchmark's directory), a warm-up (the first runs of each query open its findings, the
baseline), then a window (30 s; --quick 15 s). Counted: the query runs whose `started_at` falls
in the window (table `runs`, written by vigilo in each run's transaction), per second. Also
checked: no tick has two runs. The CPU of the vigilo processes over the window (from
/proc/PID/stat) shows they are not CPU-bound. Figures are medians over runs.
"""

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

from .common import (VIGILO, Result, cpu_seconds, fresh_dir, fresh_pg_db, load_average, log,
                     median, psql, start_runs, stop_runs, write_project)

STATE_DB = "vigilo_bench_fleet"
SOURCE_DB = "vigilo_bench_fleet_src"
QUERIES = 200
SLEEP = 0.1  # seconds each query holds its source connection
MAX_CONCURRENT = 4
WARMUP = 6.0  # seconds


def project(state_url, source_url):
    d = fresh_dir("fleet")
    config = (
        f'[state]\nurl = "{state_url}"\n\n'
        '[server]\nlisten = "${VIGILO_LISTEN}"\n\n'
        f'[scheduler]\nmax_concurrent = {MAX_CONCURRENT}\n\n'
        f'[database.src]\nurl = "{source_url}"\nmax_connections = {MAX_CONCURRENT}\n'
    )
    queries = {
        f"q{i:03d}": (f"-- title: Slow query {i}\n-- database: src\n-- schedule: 1s\n"
                      f"-- primary_key: id\n-- severity: low\n"
                      f"select i.id, i.v from items i, (select pg_sleep({SLEEP})) s where i.q = {i}\n")
        for i in range(QUERIES)
    }
    write_project(d, config, queries)
    return d


def count(url, sql):
    return int(psql(url, sql, "-A", "-t", capture=True).strip())


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def one_run(processes, window):
    state = fresh_pg_db(STATE_DB)
    source = fresh_pg_db(SOURCE_DB)
    psql(source, f"""
CREATE TABLE items (q int, id text PRIMARY KEY, v int);
INSERT INTO items SELECT q, 'k' || q || '-' || k, 0 FROM generate_series(0, {QUERIES - 1}) q,
                                                        generate_series(1, 3) k;""")
    d = project(state, source)
    env = {**os.environ, "RUST_LOG": "vigilo=warn"}
    # The schema first, so the processes do not race to create it.
    out = subprocess.run([VIGILO, "--dir", d, "status"], env={**env, "VIGILO_LISTEN": "127.0.0.1:0"},
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"fleet: vigilo status failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    procs = []
    try:
        procs = start_runs(d, env, processes)
        time.sleep(WARMUP)
        cpu_a = sum(cpu_seconds(r.proc.pid) for r in procs)
        w0 = time.time()
        time.sleep(window)
        w1 = time.time()
        cpu_b = sum(cpu_seconds(r.proc.pid) for r in procs)
    finally:
        stop_runs(procs)
    runs = count(state, f"SELECT count(*) FROM runs WHERE started_at >= '{iso(w0)}' "
                        f"AND started_at < '{iso(w1)}' AND status = 'succeeded'")
    failed = count(state, f"SELECT count(*) FROM runs WHERE started_at >= '{iso(w0)}' "
                          f"AND started_at < '{iso(w1)}' AND status = 'failed'")
    twice = count(state, "SELECT count(*) FROM (SELECT query, tick FROM runs WHERE tick IS NOT NULL "
                         "GROUP BY query, tick HAVING count(*) > 1) t")
    runners = count(state, f"SELECT count(DISTINCT ran_by) FROM runs WHERE started_at >= '{iso(w0)}' "
                           f"AND started_at < '{iso(w1)}'")
    secs = w1 - w0
    r = {"qps": runs / secs, "runs": runs, "failed": failed, "twice": twice, "runners": runners,
         "cpu_pct": 100 * (cpu_b - cpu_a) / secs}
    log(f"fleet: {processes} process(es): {runs} runs in {secs:.1f} s = {r['qps']:.1f}/s "
        f"({failed} failed, {twice} ticks run twice, {runners} processes ran them); vigilo CPU "
        f"{r['cpu_pct']:.0f}% of a core in all; {load_average()}")
    return r


def run(quick, runs):
    window = 15 if quick else 30
    runs = min(runs, 3) if quick else runs
    ceiling = MAX_CONCURRENT / SLEEP
    log(f"fleet: {QUERIES} queries every 1 s, each holding the source {SLEEP * 1000:.0f} ms, "
        f"max_concurrent {MAX_CONCURRENT} (one process ≤ {ceiling:.0f} runs/s); {window} s windows, "
        f"{runs} run(s) each with 1 and 3 processes; {load_average()}")
    one = [one_run(1, window) for _ in range(runs)]
    three = [one_run(3, window) for _ in range(runs)]
    q1, q3 = median([r["qps"] for r in one]), median([r["qps"] for r in three])
    ratio = q3 / q1 if q1 else None
    twice = max(r["twice"] for r in one + three)
    return [
        Result(f"fleet: {QUERIES} source-bound queries (pg_sleep {SLEEP * 1000:.0f} ms, "
               f"max_concurrent {MAX_CONCURRENT}), runs/s of 3 processes vs 1 ({window} s window, "
               f"median of {runs}; vigilo CPU {median([r['cpu_pct'] for r in one]):.0f}% / "
               f"{median([r['cpu_pct'] for r in three]):.0f}% of a core; ticks run twice: {twice})",
               f"{q3:.1f} runs/s", f"{q1:.1f} runs/s (1 process; ceiling {ceiling:.0f})", ratio,
               "≥ 2.5×", ratio is not None and ratio >= 2.5 and twice == 0),
    ]


if __name__ == "__main__":
    for r in run("--quick" in sys.argv, 1):
        print(r.row())
