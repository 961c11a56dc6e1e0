"""Remediation against Cloud Custodian: deactivating 500 IAM access keys (250 users, two keys
each) on moto's server.

- vigilo: `vigilo scan` over a Steampipe-shaped table that lists the 500 keys, whose query has
  an auto-remediation (no [approval]) with one aws.iam.update_access_key action per finding;
  it scans, opens 500 findings and runs their actions before it exits. The action names the
  row's status (`current_status`) and the remediation rechecks (the default), so the row the
  recheck confirms stands in for reading each user's keys, as a `ListAccessKeys` would.
- Cloud Custodian (PyPI c7n): `custodian run --cache-period 0` of a policy on iam-user with an
  access-key filter (Status Active) and remove-keys with disable: true, AWS_ENDPOINT_URL at moto.
- The floor: a boto3 script that only calls UpdateAccessKey for the 500 known keys, with 1, 4
  and 8 threads; the best median of the three.

Each figure is the wall clock of the whole process (start to exit, when the last key is
inactive), the median of several runs. Before each run moto is reset (POST /moto-api/reset)
and seeded again outside the timing, the table is rewritten with the new key ids, and vigilo's
state store is deleted; after it, boto3 checks that every one of the 500 keys is Inactive.
The number of HTTP requests moto served during each timed process is counted from its
request log. --quick takes 2 runs of each (the same 500 keys).
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .common import (
    ROOT, VIGILO, Result, fresh_dir, fresh_pg_db, free_port, log, median, psql, timed,
    write_project,
)

USERS = 250
KEYS_PER_USER = 2
KEYS = USERS * KEYS_PER_USER
THREADS = [1, 4, 8]
CONN = "aws_bench"
ACCOUNT = "123456789012"  # moto's default account
VENV = ROOT / ".venv-bench"
REQUIREMENTS = ROOT / "scripts" / "requirements-bench.txt"
FIXTURE = ROOT.parent / "shared" / "fixtures" / "steampipe_aws_iam_access_key.sql"
PG_DB = "vigilo_bench_remediation"

# Run with .venv-bench/bin/python: seeding, the floor and the check, all through boto3.
HELPER = r'''
import json, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config

def client(url, threads):
    return boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                        config=Config(max_pool_connections=max(10, threads),
                                      retries={"mode": "standard", "max_attempts": 3}))

def seed(url, users, per_user, out):
    iam = client(url, 8)
    def one(i):
        name = f"bench-user-{i:04d}"
        iam.create_user(UserName=name)
        return [(name, iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"])
                for _ in range(per_user)]
    with ThreadPoolExecutor(8) as pool:
        keys = [k for ks in pool.map(one, range(users)) for k in ks]
    json.dump(keys, open(out, "w"))

def floor(url, keys_file, threads):
    keys = json.load(open(keys_file))
    iam = client(url, threads)
    def one(k):
        iam.update_access_key(UserName=k[0], AccessKeyId=k[1], Status="Inactive")
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, keys))

def verify(url, keys_file):
    keys = json.load(open(keys_file))
    iam = client(url, 8)
    users = sorted({u for u, _ in keys})
    def one(u):
        return [(u, k["AccessKeyId"], k["Status"])
                for k in iam.list_access_keys(UserName=u)["AccessKeyMetadata"]]
    with ThreadPoolExecutor(8) as pool:
        found = {k: (u, s) for ks in pool.map(one, users) for u, k, s in ks}
    bad = [f"{k} of {u}: {found.get(k, (u, 'missing'))[1]}" for u, k in keys
           if found.get(k) != (u, "Inactive")]
    if bad:
        sys.exit(f"{len(bad)} of {len(keys)} keys are not Inactive, e.g. " + ", ".join(bad[:5]))
    print(len(keys))

cmd = sys.argv[1]
if cmd == "seed":
    seed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
elif cmd == "floor":
    floor(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif cmd == "verify":
    verify(sys.argv[2], sys.argv[3])
'''

QUERY = f"""-- title: Active IAM access keys older than 90 days
-- database: steampipe
-- primary_key: access_key_id
-- remediation: deactivate
-- severity: high
select access_key_id, user_name, account_id, status,
       _ctx ->> 'connection_name' as conn_name
from aws_iam_access_key
where status = 'Active' and create_date < now() - interval '90 days'
"""

REMEDIATION = """title = "Deactivate an IAM access key"

[[action]]
type = "aws.iam.update_access_key"
connection = "{{ row.conn_name }}"
user_name = "{{ row.user_name }}"
access_key_id = "{{ row.access_key_id }}"
status = "Inactive"
current_status = "{{ row.status }}"
"""

POLICY = """policies:
  - name: bench-deactivate-access-keys
    resource: iam-user
    filters:
      - type: access-key
        key: Status
        value: Active
    actions:
      - type: remove-keys
        disable: true
"""


def venv():
    """Creates .venv-bench, or refreshes it when scripts/requirements-bench.txt changed."""
    wanted = REQUIREMENTS.read_text()
    stamp = VENV / ".requirements-bench.txt"
    if (VENV / "bin" / "python").exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    log(f"remediation: installing {', '.join(wanted.split())} into {VENV.name}")
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([VENV / "bin" / "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", REQUIREMENTS], check=True)
    stamp.write_text(wanted)


def aws_env(work):
    """The environment of all three tools: moto's test credentials and nothing of the user's
    own AWS configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(work / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "CI": "1",
    })
    return env


class Moto:
    """moto_server on a free loopback port; its request log counts the calls each tool makes."""

    def __init__(self, work):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "moto.log"
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [VENV / "bin" / "moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/data.json", timeout=2).read()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    sys.exit(f"moto_server did not start:\n{self.log_path.read_text()[-2000:]}")
                time.sleep(0.2)

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(
            self.url + "/moto-api/reset", method="POST", data=b""), timeout=30).read()

    def log_size(self):
        return self.log_path.stat().st_size

    def requests_since(self, offset):
        """The AWS API requests moto logged after byte `offset` of its log (not /moto-api)."""
        time.sleep(0.05)  # let the last log line land
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return sum(1 for line in text.splitlines()
                   if re.search(r'"(GET|POST|PUT|DELETE|HEAD) ', line) and "/moto-api" not in line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


class Bench:
    def __init__(self, work, moto, pg_url):
        self.work = work
        self.moto = moto
        self.pg_url = pg_url
        self.env = aws_env(work)
        self.py = VENV / "bin" / "python"
        self.helper = work / "helper.py"
        self.helper.write_text(HELPER)
        self.keys_file = work / "keys.json"
        self.project = work / "vigilo"
        write_project(
            self.project,
            f'[state]\nurl = "sqlite://state.db"\n\n'
            f'[database.steampipe]\nurl = "{pg_url}"\n\n'
            f'[connection.aws.{CONN}]\nendpoint_url = "{moto.url}"\nregion = "us-east-1"\n',
            {"active_access_keys": QUERY},
            {"deactivate": REMEDIATION},
        )
        self.policy = work / "policy.yml"
        self.policy.write_text(POLICY)
        self.calls = {}

    def helper_run(self, *args, explain=None):
        out = subprocess.run([self.py, self.helper, *map(str, args)], env=self.env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"remediation helper {args[0]} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}"
                     + (explain() if explain else ""))
        return out.stdout

    def prepare(self):
        """Resets moto, seeds 250 users with 2 active keys each, rewrites the table with them."""
        self.moto.reset()
        self.helper_run("seed", self.moto.url, USERS, KEYS_PER_USER, self.keys_file)
        keys = json.loads(self.keys_file.read_text())
        assert len(keys) == KEYS and len({k for _, k in keys}) == KEYS, "seeding went wrong"
        rows = ",\n".join(
            f"('{k}', '{u}', 'Active', now() - interval '200 days', '{ACCOUNT}', "
            f"'{{\"connection_name\": \"{CONN}\"}}'::jsonb)" for u, k in keys)
        sql = ("begin;\ntruncate aws_iam_access_key;\n"
               "insert into aws_iam_access_key (access_key_id, user_name, status, create_date, "
               f"account_id, _ctx) values\n{rows};\n"
               "update aws_iam_access_key set sp_connection_name = _ctx ->> 'connection_name', "
               "sp_ctx = _ctx, title = access_key_id;\ncommit;\n")
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.pg_url],
                       input=sql, text=True, check=True, capture_output=True)

    def measure(self, label, cmd, cwd=None, explain=None):
        """Prepares, runs `cmd` under GNU time, checks all 500 keys are Inactive; wall seconds."""
        self.prepare()
        offset = self.moto.log_size()
        t = timed(cmd, cwd=cwd, env=self.env)
        self.calls.setdefault(label, []).append(self.moto.requests_since(offset))
        self.helper_run("verify", self.moto.url, self.keys_file,
                        explain=lambda: f"\nafter {label} ({' '.join(map(str, cmd))}, "
                                        f"{t.wall:.2f} s)" + (explain() if explain else ""))
        log(f"remediation: {label}: {t.wall:.2f} s ({self.calls[label][-1]} AWS requests)")
        return t.wall

    def vigilo(self):
        for f in self.project.glob("state.db*"):
            f.unlink()
        return self.measure("vigilo", [VIGILO, "--dir", self.project, "scan"],
                            explain=self.vigilo_state)

    def vigilo_state(self):
        """What vigilo's state store holds, for a run that left keys active."""
        try:
            db = sqlite3.connect(self.project / "state.db")
            counts = lambda t: ", ".join(f"{n} {s}" for s, n in db.execute(  # noqa: E731
                f"select state, count(*) from {t} group by state order by 2 desc"))
            findings = db.execute("select count(*) from findings").fetchone()[0]
            return (f"\nvigilo's state store: {findings} findings; remediation runs: "
                    f"{counts('remediation_runs')}; actions: {counts('actions')}")
        except sqlite3.Error as e:
            return f"\n(could not read vigilo's state store: {e})"

    def custodian(self):
        out = self.work / "custodian-out"
        shutil.rmtree(out, ignore_errors=True)
        self.env["AWS_ENDPOINT_URL"] = self.moto.url  # c7n has no endpoint option; boto3 reads this
        try:
            wall = self.measure("custodian", [VENV / "bin" / "custodian", "run", "--cache-period", "0",
                                              "-s", out, "--region", "us-east-1", self.policy],
                                cwd=self.work)
        finally:
            self.env.pop("AWS_ENDPOINT_URL")
        for meta in out.glob("*/metadata.json"):  # the calls c7n counted itself (STS not included)
            log(f"remediation: custodian's api-stats: {json.loads(meta.read_text()).get('api-stats')}")
        return wall

    def floor(self, threads):
        return self.measure(f"floor-{threads}", [self.py, self.helper, "floor", self.moto.url,
                                                 self.keys_file, threads])


def run(quick, runs):
    # Each measurement costs about 4 s besides its own time (reset, seeding 750 calls into moto,
    # checking 250 users' keys), so --quick takes 2 runs of each of the five, about 90 s.
    n = min(runs, 2) if quick else runs
    log(f"remediation: {KEYS} keys of {USERS} users on moto, median of {n} runs")
    _, med, calls, best = staged_race("remediation", PG_DB, "aws_iam_access_key", FIXTURE, Bench, n)
    results = against(med, calls, best,
                      (f"remediation, {KEYS} keys on moto: vigilo against Cloud Custodian", 2.5),
                      (f"remediation, {KEYS} keys on moto: vigilo against the boto3 floor ({best} threads)", 1.4))
    results.extend(floor_results(f"remediation floor: boto3 UpdateAccessKey × {KEYS}", med, calls))
    return results


def staged_race(name, pg_db, table, fixture, make_bench, n):
    """`race` on a fresh work directory, a fresh database `pg_db` holding only `table` (its
    CREATE from `fixture`) and a moto server of its own; `make_bench(work, moto, pg_url)` makes
    the bench. Returns the bench, the medians, the median call counts and the fastest floor's
    thread count."""
    venv()
    work = fresh_dir(name)
    pg = fresh_pg_db(pg_db)
    schema = re.search(rf"create table {table} \(.*?\n\);", fixture.read_text(), re.S)
    psql(pg, schema.group(0))  # the table only, not the fixture's example rows
    started = time.monotonic()
    moto = Moto(work)
    try:
        bench = make_bench(work, moto, pg)
        med, calls, best = race(bench, n)
    finally:
        moto.stop()
    log(f"{name}: done in {time.monotonic() - started:.0f} s")
    return bench, med, calls, best


def against(med, calls, best, custodian, floor):
    """The two compared rows of a `race`: (name, at least this many times faster) than Cloud
    Custodian, and (name, at most this many times) the fastest floor."""
    v, c, f = med["vigilo"], med["custodian"], med[f"floor-{best}"]
    (c_name, faster), (f_name, within) = custodian, floor
    return [
        Result(c_name, f"{v:.2f} s ({calls['vigilo']} calls)", f"{c:.2f} s ({calls['custodian']} calls)",
               c / v, f">= {faster}× faster", c / v >= faster),
        Result(f_name, f"{v:.2f} s", f"{f:.2f} s ({calls[f'floor-{best}']} calls)",
               v / f, f"<= {within}×", v / f <= within),
    ]


def race(bench, n):
    """Times `bench`'s vigilo, Custodian, floor at each of THREADS and what `bench.more()` adds
    (label, run), n rounds interleaved (so that drift on a shared machine hits all alike);
    returns the medians, the median call counts, and the thread count of the fastest floor."""
    times = {}
    for _ in range(n):
        times.setdefault("vigilo", []).append(bench.vigilo())
        times.setdefault("custodian", []).append(bench.custodian())
        for th in THREADS:
            times.setdefault(f"floor-{th}", []).append(bench.floor(th))
        for label, timed_run in getattr(bench, "more", list)():
            times.setdefault(label, []).append(timed_run())
    med = {k: median(v) for k, v in times.items()}
    calls = {k: int(median(v)) for k, v in bench.calls.items()}
    return med, calls, min(THREADS, key=lambda th: med[f"floor-{th}"])


def floor_results(what, med, calls):
    """One information row per floor thread count of a `race`."""
    return [Result(f"{what}, {th} thread{'s' if th > 1 else ''}",
                   f"{med[f'floor-{th}']:.2f} s ({calls[f'floor-{th}']} calls)", "", None,
                   "(information)", None)
            for th in THREADS]
