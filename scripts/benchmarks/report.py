"""`vigilo report` over N findings, streamed a page at a time, against `vigilo findings`,
which holds every finding in memory."""

import sqlite3

from .common import VIGILO, Result, fresh_dir, log, median_timing, timed, write_project


def project(n):
    """A project whose one query returns `n` rows, scanned once: `n` open findings."""
    d = fresh_dir("report")
    write_project(
        d,
        '[state]\nurl = "sqlite://state.db"\n\n[database.src]\nurl = "sqlite://src.db"\n',
        {"keys": "-- title: Keys\n-- severity: high\n-- primary_key: id\n"
                 "select id, owner, account, created from keys\n"},
    )
    db = sqlite3.connect(d / "src.db")
    db.execute("create table keys (id text, owner text, account text, created text)")
    db.executemany(
        "insert into keys values (?, ?, ?, ?)",
        ((f"AKIA{i:016d}", f"user{i % 5000}", f"{100000000000 + i % 40}", "2026-01-01T00:00:00Z")
         for i in range(n)),
    )
    db.commit()
    db.close()
    timed([VIGILO, "--dir", d, "scan"])
    return d


def run(quick, runs):
    n = 20_000 if quick else 100_000
    log(f"report: {n:,} findings")
    d = project(n)
    cmd = lambda *a: [VIGILO, "--dir", d, *a]  # noqa: E731
    base = median_timing([timed(cmd("findings", "--status", "all", "--format", "csv"))
                          for _ in range(runs)])
    results = []
    for fmt in ["csv", "json", "html"]:
        t = median_timing([timed(cmd("report", "--format", fmt, "-o", "/dev/null"))
                           for _ in range(runs)])
        results.append(Result(
            f"report --format {fmt}, {n:,} findings: peak RSS",
            f"{t.rss_mb:.0f} MB ({t.wall:.2f} s)",
            f"{base.rss_mb:.0f} MB ({base.wall:.2f} s)",
            t.rss_mb / base.rss_mb, "streams: well under `findings`", t.rss_mb < base.rss_mb / 2))
    return results
