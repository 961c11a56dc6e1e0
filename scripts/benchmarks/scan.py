"""`vigilo scan` as a whole process against `psql \\copy (QUERY) to '/dev/null'` on the same
query: the cost of reading the rows off the wire. Each vigilo run is paired with a baseline
run just before it; the ratio is of the medians."""

import os
import re

from . import steampipe
from .common import (PG_ADMIN, VIGILO, Result, fresh_dir, fresh_pg_db, log, median_timing, psql,
                     timed, write_project)

SOURCE_DB = "vigilo_bench_source"
STATE_DB = "vigilo_bench_state"


class Project:
    """A vigilo project with one query over the source table and its state in `backend`."""

    def __init__(self, backend, source_url, table):
        self.backend, self.source_url, self.table = backend, source_url, table
        self.dir = fresh_dir(f"scan-{backend}")

    def reset(self, on_first_run):
        """Empties the state store and writes the project with `on_first_run`."""
        if self.backend == "sqlite":
            for suffix in ["", "-wal", "-shm"]:
                path = self.dir / f"state.db{suffix}"
                if path.exists():
                    path.unlink()
            state = "sqlite://state.db"
        else:
            state = fresh_pg_db(STATE_DB)
        write_project(
            self.dir,
            f'[state]\nurl = "{state}"\n\n[database.steampipe]\nurl = "{self.source_url}"\n',
            {"keys": f"-- title: Access keys\n-- primary_key: access_key_id\n"
                     f"-- on_first_run: {on_first_run}\n{steampipe.query(self.table)}\n"},
        )

    def scan(self):
        """One `vigilo scan`, timed; returns (Timing, (inserted, updated, deleted))."""
        t, out = timed([VIGILO, "--dir", self.dir, "scan"], output=True)
        counts = re.search(r"\+(\d+) ~(\d+) -(\d+)", out)
        return t, tuple(int(c) for c in counts.groups()) if counts else None


def baseline_cmd(url, query):
    return ["psql", "-X", "-q", url, "-c", f"\\copy ({query}) to '/dev/null'"]


def settle():
    """Waits out the writes a run before left behind: the kernel's dirty pages (`sync`) and
    the PostgreSQL server's dirty buffers (`CHECKPOINT`). A first run writes over a gigabyte,
    which a back-to-back next run would otherwise pay for; scans minutes apart never do."""
    os.sync()
    psql(PG_ADMIN, "CHECKPOINT")


def paired(runs, baseline, measure, before=None):
    """Runs baseline then measure, `runs` times, each pair on a settled machine; returns
    (median baseline, median measure, last output)."""
    base, meas, last = [], [], None
    for _ in range(runs):
        if before:
            before()
        settle()
        base.append(timed(baseline))
        t, last = measure()
        meas.append(t)
    return median_timing(base), median_timing(meas), last


def run(quick, runs):
    n = 100_000 if quick else 1_000_000
    table = "aws_iam_access_key"
    log(f"scan: creating {n:,} Steampipe-shaped rows")
    source = fresh_pg_db(SOURCE_DB)
    steampipe.create(source, table, n)
    base_cmd = baseline_cmd(source, steampipe.query(table))
    churn = steampipe.Churn(source, table, n)
    results = []
    for backend in ["sqlite", "postgres"]:
        p = Project(backend, source, table)

        cases = []
        log(f"scan ({backend} state): first run, on_first_run = baseline")
        cases.append(("first run, baseline", 2.5, None,
                      paired(runs, base_cmd, p.scan, before=lambda: p.reset("baseline"))))
        log(f"scan ({backend} state): first run, on_first_run = insert")
        cases.append(("first run, insert (every row a finding)", 6.0, None,
                      paired(runs, base_cmd, p.scan, before=lambda: p.reset("insert"))))
        log(f"scan ({backend} state): steady")
        cases.append(("steady (nothing changed)", 1.5, 150, paired(runs, base_cmd, p.scan)))
        log(f"scan ({backend} state): 1% changed, 1% new, 1% gone")
        cases.append(("1% changed, 1% new, 1% gone", 2.0, None,
                      paired(runs, base_cmd, p.scan, before=churn)))
        for name, target, rss_target, (b, v, counts) in cases:
            ratio = v.wall / b.wall
            met = ratio <= target and (rss_target is None or v.rss_mb <= rss_target)
            target_text = f"≤ {target}×" + (f", ≤ {rss_target} MB" if rss_target else "")
            results.append(Result(
                f"scan {n:,} rows, {backend} state: {name}"
                + (f" (+{counts[0]:,} ~{counts[1]:,} -{counts[2]:,})" if counts else ""),
                f"{v.wall:.2f} s, {v.rss_mb:.0f} MB",
                f"{b.wall:.2f} s (psql \\copy)", ratio, target_text, met))
    return results
