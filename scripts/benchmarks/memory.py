"""Memory grows with keys, not rows: peak RSS of a steady-state `vigilo scan` at three table
sizes, and the slope of a least-squares line through them, in bytes per key."""

from . import steampipe
from .common import (VIGILO, Result, fresh_dir, fresh_pg_db, log, median_timing, timed,
                     write_project)

SOURCE_DB = "vigilo_bench_memory"


def steady_rss(source, table, runs):
    """Peak RSS (MB) of a steady-state scan of `table` (median of `runs`), after a baseline run."""
    d = fresh_dir(f"memory-{table}")
    write_project(
        d,
        f'[state]\nurl = "sqlite://state.db"\n\n[database.steampipe]\nurl = "{source}"\n',
        {"keys": "-- title: Access keys\n-- primary_key: access_key_id\n-- on_first_run: baseline\n"
                 f"{steampipe.query(table)}\n"},
    )
    timed([VIGILO, "--dir", d, "scan"])
    return median_timing([timed([VIGILO, "--dir", d, "scan"]) for _ in range(runs)])


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def run(quick, runs):
    sizes = [20_000, 60_000, 200_000] if quick else [100_000, 300_000, 1_000_000]
    source = fresh_pg_db(SOURCE_DB)
    points, results = [], []
    for n in sizes:
        table = f"keys_{n}"
        log(f"memory: {n:,} rows")
        steampipe.create(source, table, n)
        keys = n * 9 // 10
        t = steady_rss(source, table, runs)
        points.append((keys, t.rss_mb * 1024 * 1024))
        results.append(Result(f"memory: steady scan of {n:,} rows ({keys:,} keys)",
                              f"{t.rss_mb:.1f} MB peak RSS ({t.wall:.2f} s)", "", None,
                              "(information)", None))
    per_key = slope(points)
    results.append(Result(
        f"memory: bytes per key, least squares over {', '.join(f'{n:,}' for n in sizes)} rows",
        f"{per_key:.0f} B/key", "", None, "≤ 100 B/key", per_key <= 100))
    return results
