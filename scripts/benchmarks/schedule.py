"""Many queries: 1,000 enabled queries with `-- schedule: 10s`, each against its own small
PostgreSQL table (3 rows), under `vigilo run` for 2 minutes (--quick: 30 s), then SIGINT.

Scheduled time. An interval schedule is aligned to the Unix epoch and shifted per query by
a stable offset (src/schedule.rs, `Schedule::next_for`: FNV-1a 64 of the query's name modulo the
interval, here 10 s): a `10s` query is due at every multiple of 10 s since 1970 plus its offset,
so the 1,000 queries spread over each 10 s instead of all starting at once. Each query has its own task (src/scheduler.rs `query_loop`) that sleeps
until its tick, takes a permit of the `[scheduler] max_concurrent` semaphore (default 4) and calls
`Scanner::run`, which stamps the run's `started_at` (the `runs` table of the state store) with
`Utc::now()` before it does anything else. So for each run:

    start lag = started_at - (floor((started_at - offset) / 10 s) * 10 s + offset)

which is exactly the `lag_ms` vigilo logs at debug level ("query run starting"), read from the
store so logging stays at the default (info). This holds while lags stay under 10 s; a lag of
10 s or more would make vigilo skip a tick and log "skipped ticks", which is counted and
reported.

Samples: every run of every tick from the second tick after startup on. The first tick is left
out: vigilo does not catch up on startup (a query's first tick is the next multiple of 10 s),
but that tick is every query's first run, which opens its 3 findings, not the steady state
being measured. A tick is counted if it came a full period before the SIGINT, or if every query
started in it before the SIGINT (runs not started when the signal came are never started).
About 1,000 × 10 = 10,000 runs in 2 minutes, ~2,000 with --quick. One run of the process gives
all of them; it is not repeated (the `runs` argument is not used).

CPU: user + system seconds of the whole `vigilo run` process (GNU time -v) over its wall time,
as a percentage of one core; and, beside it, the same over the counted ticks only (from
/proc/PID/stat), which leaves out startup and the first ticks. PostgreSQL's own CPU for the
queries is not vigilo's and is not counted.
"""

import os
import signal
import sqlite3
import subprocess
import time
from datetime import datetime

from .common import (VIGILO, Result, cpu_seconds, fresh_dir, fresh_pg_db, free_port, log,
                     parse_time, percentile, psql, write_project)

SOURCE_DB = "vigilo_bench_schedule"
EVERY = 10.0  # seconds


def create_tables(url, n):
    psql(url, f"""
DO $$
BEGIN
  FOR i IN 0..{n - 1} LOOP
    EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, name text, owner text)', lpad(i::text, 4, '0'));
    EXECUTE format('INSERT INTO t%s VALUES (1, %L, %L), (2, %L, %L), (3, %L, %L)', lpad(i::text, 4, '0'),
                   'a' || i, 'alice', 'b' || i, 'bob', 'c' || i, 'carol');
  END LOOP;
END $$;""")


def project(source, n):
    d = fresh_dir("schedule")
    queries = {
        f"q{i:04d}": (f"-- title: Small table {i}\n-- database: src\n-- schedule: 10s\n"
                      f"-- primary_key: id\n-- severity: low\n"
                      f"select id, name, owner from t{i:04d}\n")
        for i in range(n)
    }
    write_project(
        d,
        f'[state]\nurl = "sqlite://state.db"\n\n[server]\nlisten = "127.0.0.1:{free_port()}"\n\n'
        f'[database.src]\nurl = "{source}"\n',
        queries,
    )
    return d


def child_pid(pid):
    for _ in range(50):
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.02)
    raise RuntimeError("vigilo did not start under GNU time")


def next_tick(t):
    return (int(t // EVERY) + 1) * EVERY


def offset(query):
    """vigilo's per-query shift of interval ticks, in seconds (`Schedule::offset_for`)."""
    h = 0xcbf29ce484222325
    for b in query.encode():
        h = ((h ^ b) * 0x100000001b3) % 2**64
    return (h % int(EVERY * 1000)) / 1000


def parse_started(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def run(quick, runs):
    n = 1000
    seconds = 30 if quick else 120
    log(f"schedule: {n:,} queries every 10 s against small PostgreSQL tables, "
        f"`vigilo run` for {seconds} s (one run: its lag samples are the runs it makes)")
    source = fresh_pg_db(SOURCE_DB)
    create_tables(source, n)
    d = project(source, n)
    err_path = d / "run.stderr"
    with open(err_path, "w") as err:
        t_start = time.time()
        proc = subprocess.Popen(["/usr/bin/time", "-v", VIGILO, "--dir", d, "run"],
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            pid = child_pid(proc.pid)
            first_counted = next_tick(t_start) + EVERY  # the second tick after startup
            time.sleep(max(0.0, first_counted - time.time()))
            cpu_a, wall_a = cpu_seconds(pid), time.time()
            time.sleep(max(0.0, t_start + seconds - time.time()))
            t_stop = time.time()
            cpu_b = cpu_seconds(pid)
            os.kill(pid, signal.SIGINT)  # GNU time ignores SIGINT itself: signal vigilo
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = err_path.read_text()
    timing = parse_time(stderr)
    skipped = stderr.count("skipped ticks")
    failed_runs = stderr.count("query run failed")
    last_full = next_tick(t_stop) - 2 * EVERY  # the last tick a full period before SIGINT
    db = sqlite3.connect(d / "state.db")
    rows = db.execute("SELECT query, started_at, status FROM runs").fetchall()
    db.close()
    per_tick = {}
    for query, started, _ in rows:
        s = parse_started(started)
        off = offset(query)
        tick = ((s - off) // EVERY) * EVERY  # the epoch-aligned tick this run belongs to
        per_tick.setdefault(tick, []).append((s - tick - off) * 1000)
    # Counted: from the second tick on, up to the last tick a full period before the SIGINT,
    # and a later tick too if every query started in it before the SIGINT.
    ticks = sorted(t for t, ls in per_tick.items()
                   if t >= first_counted and (t <= last_full or len(ls) == n))
    lags = sorted(lag for t in ticks for lag in per_tick[t])
    p50, p99 = percentile(lags, 50), percentile(lags, 99)
    lmax = lags[-1] if lags else float("nan")
    cpu_pct = 100 * timing.cpu / timing.wall
    steady_pct = 100 * (cpu_b - cpu_a) / (t_stop - wall_a)
    log(f"schedule: {len(rows)} runs in all ({failed_runs} failed, {skipped} skipped-tick warnings); "
        f"{len(lags)} counted over {len(ticks)} ticks; lag p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"max {lmax:.0f} ms; CPU {cpu_pct:.0f}% of a core over {timing.wall:.0f} s "
        f"({steady_pct:.0f}% over the counted ticks), peak RSS {timing.rss_mb:.0f} MB")
    runs_per_tick = ", ".join(f"{len(per_tick[t])}{'' if t in ticks else ' (not counted)'}"
                              for t in sorted(per_tick))
    log(f"schedule: runs per tick: {runs_per_tick}")
    samples = f"{len(lags):,} runs over {len(ticks)} ticks, one {seconds} s run, first tick left out"
    return [
        Result(f"schedule: {n:,} queries every 10 s, start lag p50 ({samples})",
               f"{p50:.0f} ms", "", None, "", None),
        Result(f"schedule: {n:,} queries every 10 s, start lag p99 (max {lmax:.0f} ms)",
               f"{p99:.0f} ms", "", None, "p99 ≤ 100 ms", p99 <= 100),
        Result(f"schedule: {n:,} queries every 10 s, CPU of `vigilo run` ({timing.wall:.0f} s)",
               f"{cpu_pct:.0f}% of a core ({timing.cpu:.1f} s CPU; {steady_pct:.0f}% over the "
               f"counted ticks; peak RSS {timing.rss_mb:.0f} MB)",
               "", None, "≤ 25% of one core", cpu_pct <= 25),
    ]
