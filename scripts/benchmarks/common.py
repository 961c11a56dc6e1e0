"""What every benchmark shares: the release binary, GNU time, medians, PostgreSQL and projects."""

import hashlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# VIGILO_BENCH_BIN measures a binary built elsewhere (say, under another release profile)
# without building; otherwise the build lands where cargo puts it (CARGO_TARGET_DIR too).
BIN_GIVEN = os.environ.get("VIGILO_BENCH_BIN")
VIGILO = Path(BIN_GIVEN) if BIN_GIVEN else \
    Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "vigilo"
PG_ADMIN = os.environ.get("VIGILO_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
# Two checkouts benchmarking at once must not share directories or databases: both carry a
# tag of the checkout's path.
TAG = hashlib.sha256(str(ROOT).encode()).hexdigest()[:6]
WORK = Path(os.environ.get("VIGILO_BENCH_DIR", tempfile.gettempdir())) / f"vigilo-bench-{TAG}"


def log(msg):
    """Progress goes to stderr; the results table to stdout."""
    print(msg, file=sys.stderr, flush=True)


def build():
    """Builds vigilo in release, unless VIGILO_BENCH_BIN names a binary to measure."""
    if BIN_GIVEN:
        log(f"measuring {VIGILO} (VIGILO_BENCH_BIN), not building")
        return
    log("building vigilo (release)")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


@dataclass
class Timing:
    """One process run under GNU time."""

    wall: float
    rss_mb: float
    cpu: float  # user + system seconds


def timed(cmd, cwd=None, env=None, check=True, output=False):
    """Runs `cmd` under GNU time -v; returns its Timing (and its stdout when `output`)."""
    if not Path("/usr/bin/time").exists():
        sys.exit("scripts/bench needs GNU time: apt-get install time")
    out = subprocess.run(["/usr/bin/time", "-v", *map(str, cmd)], cwd=cwd, env=env,
                         capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    t = parse_time(out.stderr)
    return (t, out.stdout) if output else t


def parse_time(stderr):
    """Reads wall clock, peak RSS and CPU seconds from GNU time -v output."""
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", stderr)
    h, m, s = wall.groups()
    seconds = int(h or 0) * 3600 + int(m) * 60 + float(s)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", stderr).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", stderr).group(1))
    return Timing(seconds, rss_kb / 1024, user + system)


def median(values):
    return statistics.median(values)


def median_timing(timings):
    """The median wall clock, peak RSS and CPU of several runs (each taken separately)."""
    return Timing(median(t.wall for t in timings), median(t.rss_mb for t in timings),
                  median(t.cpu for t in timings))


def psql(url, sql, *extra, capture=False):
    """Runs SQL through psql, stopping at the first error."""
    env = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *extra, "-c", sql],
                         check=True, capture_output=capture, text=True, env=env)
    return out.stdout if capture else None


def pg_url(db):
    """The URL of database `db` on the benchmark's server."""
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + db


def fresh_pg_db(name):
    """Drops and creates database `name` (tagged with this checkout); returns its URL."""
    name = f"{name}_{TAG}"
    psql(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(PG_ADMIN, f'CREATE DATABASE "{name}"')
    return pg_url(name)


def fresh_dir(name):
    """An empty working directory under WORK."""
    d = WORK / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_project(d, config, queries=None, remediations=None):
    """Writes a vigilo project: config/vigilo.toml, queries/NAME.sql, remediations/NAME.toml."""
    (d / "config").mkdir(parents=True, exist_ok=True)
    (d / "queries").mkdir(exist_ok=True)
    (d / "remediations").mkdir(exist_ok=True)
    (d / "config" / "vigilo.toml").write_text(config)
    for name, text in (queries or {}).items():
        (d / "queries" / f"{name}.sql").write_text(text)
    for name, text in (remediations or {}).items():
        (d / "remediations" / f"{name}.toml").write_text(text)


@dataclass
class Result:
    """One line of the results table."""

    benchmark: str
    measured: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None

    def row(self):
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}×"
        met = {True: "yes", False: "**no**", None: ""}[self.met]
        return f"| {self.benchmark} | {self.measured} | {self.baseline} | {ratio} | {self.target} | {met} |"


def print_table(results):
    print("| benchmark | measured | baseline | ratio | target | met |")
    print("| --- | ---: | ---: | ---: | --- | :---: |")
    for r in results:
        print(r.row())


def percentile(sorted_values, p):
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(-(-p * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def cpu_seconds(pid):
    """utime + stime of process `pid` so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average():
    """The machine's load, to be stated beside figures taken while others use it."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Serving:
    """A `vigilo run` process serving HTTP on `port` (its project's `[server] listen` is
    `${VIGILO_LISTEN}`), its stderr in `err`."""

    proc: subprocess.Popen
    port: int
    err: object


def start_runs(d, env, n, limit=30):
    """Starts n `vigilo run` processes on project `d`, each serving on its own port (stderr in
    d/runI.stderr), and waits until each answers /healthz."""
    runs = []
    for i in range(n):
        port = free_port()
        err = open(d / f"run{i}.stderr", "w")
        proc = subprocess.Popen([VIGILO, "--dir", d, "run"],
                                env={**env, "VIGILO_LISTEN": f"127.0.0.1:{port}"},
                                stdout=subprocess.DEVNULL, stderr=err)
        runs.append(Serving(proc, port, err))
    for i, r in enumerate(runs):
        if not wait_healthy(r, limit):
            stop_runs(runs)
            sys.exit(f"vigilo run did not become healthy:\n{(d / f'run{i}.stderr').read_text()[-3000:]}")
    return runs


def wait_healthy(run, limit):
    deadline = time.time() + limit
    while time.time() < deadline and run.proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{run.port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def stop_runs(runs):
    """SIGINT to each (runs in flight finish), then waits; SIGKILL after 40 s."""
    for r in runs:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGINT)
    for r in runs:
        try:
            r.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()
        r.err.close()


def pg_rows(url, sql):
    """The rows of `sql` as lists of text fields."""
    out = psql(url, sql, "-A", "-t", "-F", "\t", capture=True)
    return [line.split("\t") for line in out.splitlines() if line]
