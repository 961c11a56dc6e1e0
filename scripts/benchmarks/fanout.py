"""Approval fan-out: N new findings needing approval in one scan (1,000; --quick 200), spread
evenly over 20 Slack channels, posted to a Slack Web API stand-in (slack_standin.py, its own
process) that allows one message per second per channel and answers a burst with HTTP 429.

The project: one SQLite source table of N rows in 20 groups; 20 queries q01..q20, each selecting
one group (N/20 rows) with `-- remediation: r01..r20`; remediation rK asks for approval through
notifier nK, whose one target is `{ integration = "slack.default", channel = "CKK" }` (C01..C20). Every
finding opens one approval and queues one approval request: N chat.postMessage calls, N/20 per
channel. At one message per second per channel the last post can come (N/20 - 1) s after the
first at the earliest: 49 s for 1,000, 9 s for 200. That is the floor the target is taken
against (total within 10% of it).

Each run, on a fresh project and a fresh stand-in:

1. `vigilo scan` under GNU time, from a t0 taken just before it starts. It opens findings,
   requests approvals and drains the messages that are due within 1.5 s, for up to 120 s
   (src/cli.rs `drain`, src/notify.rs `drain`), then exits.
2. If the stand-in has not accepted all N posts when the scan exits, `vigilo run` is started on
   the same project (as a service would be) and left running until the stand-in has N posts (or
   a deadline passes), then stopped with SIGINT.

Measured: the total time from t0 to the last accepted post, its ratio to the floor, how many
posts the scan alone delivered and how long it ran, and the stand-in's counts: accepted posts,
duplicates (a text or approval id posted twice), 429s answered, refused calls.
"""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .common import VIGILO, Result, fresh_dir, free_port, log, median, parse_time, write_project

CHANNELS = 20
TOKEN = "xoxb-bench-0000000000-fanout"
STANDIN = Path(__file__).resolve().parent / "slack_standin.py"


def channel(k):
    return f"C{k:02d}"


def project(n):
    """A fresh project whose 20 queries open n findings, n/20 per Slack channel."""
    d = fresh_dir("fanout")
    port = free_port()
    config = [
        '[state]\nurl = "sqlite://state.db"\n',
        '[database.src]\nurl = "sqlite://src.db"\n',
        f'[server]\nlisten = "127.0.0.1:{free_port()}"\n',
        '[integration.slack.default]\ntoken = "${FANOUT_SLACK_TOKEN}"\n'
        'signing_secret = "bench-signing-secret"\napi_url = "${FANOUT_SLACK_API}"\n',
        '[approver.alice]\nslack = "U0ALICE"\n',
    ]
    queries, remediations = {}, {}
    for k in range(1, CHANNELS + 1):
        config.append(f'[notifier.n{k:02d}]\n'
                      f'notify = [{{ integration = "slack.default", channel = "{channel(k)}" }}]\n')
        queries[f"q{k:02d}"] = (f"-- title: Fan-out group {k}\n-- database: src\n-- primary_key: id\n"
                                f"-- remediation: r{k:02d}\n-- severity: high\n"
                                f"select id, grp, owner from items where grp = {k}\n")
        remediations[f"r{k:02d}"] = (
            f'title = "Fan-out remediation {k}"\n\n[approval]\nnotifier = "n{k:02d}"\n'
            'subject = "Approve finding {{ row.id }}?"\n'
            'prompt = "Item {{ row.id }} of {{ row.owner }} in group {{ row.grp }}."\n'
            'approvers = ["alice"]\ntimeout = "24h"\n')
    write_project(d, "\n".join(config), queries, remediations)
    db = sqlite3.connect(d / "src.db")
    db.execute("create table items (id text primary key, grp integer, owner text)")
    db.executemany("insert into items values (?, ?, ?)",
                   ((f"item-{i:05d}", i % CHANNELS + 1, f"user{i % 97}") for i in range(n)))
    db.commit()
    db.close()
    return d, port


class Standin:
    """slack_standin.py as its own process on a free port."""

    def __init__(self, d, port):
        self.port = port
        self.api = f"http://127.0.0.1:{port}/api"
        channels = ",".join(channel(k) for k in range(1, CHANNELS + 1))
        self.proc = subprocess.Popen(
            [sys.executable, STANDIN, "--port", str(port), "--token", TOKEN,
             "--channels", channels, "--log", d / "slack-posts.jsonl"],
            stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        sys.exit("fanout: the Slack stand-in did not start")

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.load(r)

    def posts(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/posts", timeout=30) as r:
            return json.load(r)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(cmd, env, err_path):
    """Starts `cmd` under GNU time -v; its stderr (time's report last) goes to err_path."""
    err = open(err_path, "w")
    proc = subprocess.Popen(["/usr/bin/time", "-v", *map(str, cmd)], env=env,
                            stdout=subprocess.DEVNULL, stderr=err)
    return proc, err


def stop(proc, timeout=40):
    """Stops vigilo under GNU time with SIGINT. GNU time ignores SIGINT while it waits, and
    does not pass it on, so the signal goes to its child, vigilo, directly."""
    try:
        child = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                   text=True).stdout.split()[0])
        os.kill(child, signal.SIGINT)
    except (IndexError, ValueError, ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_run(n, deadline):
    d, port = project(n)
    standin = Standin(d, port)
    env = {**os.environ, "FANOUT_SLACK_TOKEN": TOKEN, "FANOUT_SLACK_API": standin.api,
           "CI": "1", "RUST_LOG": "vigilo=warn"}
    try:
        t0 = time.time()
        proc, err = start([VIGILO, "--dir", d, "scan"], env, d / "scan.stderr")
        proc.wait()
        err.close()
        scan_end = time.time()
        scan_stderr = (d / "scan.stderr").read_text()
        if proc.returncode != 0:
            sys.exit(f"fanout: vigilo scan failed ({proc.returncode}):\n{scan_stderr[-3000:]}")
        scan_time = parse_time(scan_stderr)
        after_scan = standin.stats()
        used_run = after_scan["accepted"] < n
        run_cpu = None
        if used_run:
            proc, err = start([VIGILO, "--dir", d, "run"], env, d / "run.stderr")
            try:
                while time.time() - t0 < deadline:
                    if standin.stats()["accepted"] >= n:
                        break
                    if proc.poll() is not None:
                        break
                    time.sleep(0.25)
            finally:
                stop(proc)
                err.close()
            run_stderr = (d / "run.stderr").read_text()
            try:
                run_cpu = parse_time(run_stderr).cpu
            except AttributeError:
                run_cpu = None
        stats = standin.stats()
        posts = [p for p in standin.posts() if p["method"] == "chat.postMessage"]
    finally:
        standin.stop()
    texts = [p["text"] for p in posts]
    approvals = {p["approval"] for p in posts}
    per_channel = {}
    for p in posts:
        per_channel.setdefault(p["channel"], []).append(p["at"])
    last = max((p["at"] for p in posts), default=None)
    r = {
        "dir": d,
        "posted": len(set(texts)),
        "accepted": stats["accepted"],
        "duplicates": stats["duplicates"],
        "rate_limited": stats["rate_limited"],
        "refused": stats["refused"],
        "distinct_approvals": len(approvals - {None}),
        "scan_wall": scan_time.wall,
        "scan_cpu": scan_time.cpu,
        "scan_posted": after_scan["accepted"],
        "scan_end": scan_end - t0,
        "used_run": used_run,
        "run_cpu": run_cpu,
        "first": (min(p["at"] for p in posts) - t0) if posts else None,
        "total": (last - t0) if last else None,
        "channels": len(per_channel),
        "per_channel_min": min((len(v) for v in per_channel.values()), default=0),
        "per_channel_max": max((len(v) for v in per_channel.values()), default=0),
    }
    log(f"fanout: {r['accepted']}/{n} posted ({r['duplicates']} duplicates, "
        f"{r['rate_limited']} answered 429, {r['refused']} refused); scan posted "
        f"{r['scan_posted']} and exited after {r['scan_wall']:.1f} s"
        + (" ; then vigilo run" if used_run else "")
        + (f"; last post {r['total']:.1f} s after start" if r["total"] else ""))
    return r


def run(quick, runs):
    n = 200 if quick else 1000
    per = n // CHANNELS
    floor = per - 1  # seconds between the first and the last post of a channel at 1/s
    deadline = 300 if quick else 900
    log(f"fanout: {n:,} approvals over {CHANNELS} channels ({per} each; floor {floor} s), "
        f"{runs} run(s)")
    rs = [one_run(n, deadline) for _ in range(runs)]
    complete = [r for r in rs if r["accepted"] >= n and r["total"] is not None]
    totals = [r["total"] if r["accepted"] >= n else math.inf for r in rs]
    total = median(totals)
    ratio = total / floor
    dup = max(r["duplicates"] for r in rs)
    posted = median([r["posted"] for r in rs])
    r429 = median([r["rate_limited"] for r in rs])
    scan_posted = median([r["scan_posted"] for r in rs])
    scan_wall = median([r["scan_wall"] for r in rs])
    via = ("`vigilo scan`, then `vigilo run` for the rest" if any(r["used_run"] for r in rs)
           else "`vigilo scan` alone")
    results = [
        Result(f"fan-out: {n:,} approvals to 20 Slack channels at 1 msg/s each, start to last post",
               (f"{total:.1f} s" if math.isfinite(total) else f"not done in {deadline} s")
               + f" ({via})",
               f"{floor} s floor ({per}/channel at 1/s)", ratio if math.isfinite(ratio) else None,
               "≤ 1.10× the floor", math.isfinite(ratio) and ratio <= 1.10),
        Result(f"fan-out: posted, none twice ({n:,} expected)",
               f"{posted:.0f} posted, {dup} duplicate(s), {r429:.0f} answered 429",
               f"{n:,}", None, "all posted, none twice",
               len(complete) == len(rs) and dup == 0),
        Result("fan-out: what `vigilo scan` itself delivers before it exits",
               f"{scan_posted:.0f} of {n:,} in {scan_wall:.1f} s", "", None, "", None),
    ]
    return results


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for r in run(quick, 1):
        print(r.row())
