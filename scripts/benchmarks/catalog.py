"""The AWS catalog after approval against Cloud Custodian: revoking 500 security-group ingress
rules (500 groups, each with one rule open to the world on SSH or RDP and one HTTPS rule that
stays) on moto's server.

- vigilo: the repository's query queries/vpc_security_group_open_admin_ports.sql over a
  Steampipe-shaped aws_vpc_security_group_rule table that lists every rule of the 500 groups,
  and its remediation remediations/revoke_open_admin_port.toml (an approval, then one
  aws.ec2.revoke_security_group_ingress per finding; recheck on). Outside the timing, `vigilo
  scan` opens 500 findings and 500 pending approvals and `vigilo run` starts. The figure is
  from the first vote until the state store holds all 500 actions finished: 500 approve votes
  posted to `vigilo run`'s approval route (`POST /approvals/ID`, as a person's click arrives,
  4 at a time), the recheck, planning, reading each group and revoking each rule. Actions
  start while votes still arrive, so the store's own times split the figure for information:
  the votes (first vote to the last approval decided) and the actions left after the last
  decision (to the last action finished).
- Cloud Custodian (PyPI c7n): `custodian run --cache-period 0` of a policy on
  aws.security-group with an ingress filter (ports 22 and 3389 from 0.0.0.0/0) and
  remove-permissions (ingress: matched), AWS_ENDPOINT_URL at moto; the whole process, which
  finds the rules itself (DescribeSecurityGroups) and revokes each group's matched rule.
- The floor: boto3 calling RevokeSecurityGroupIngress once per rule (one rule per group, so
  no fewer calls can do the work) for the 500 known rules, with 1, 4 and 8 threads, timed
  inside the process from the first call to the last answer (the client is made before);
  the best median of the three. A second floor does what section 9 requires of vigilo: reads
  every group first, 100 in each DescribeSecurityGroups, then revokes the rules the reads show
  open, 8 calls at a time (vigilo's concurrency); vigilo is compared with both.

Custodian decides and acts in one run with no approval, so its process time is compared with
vigilo's time from the approval on; vigilo's scan (finding the rules and asking) is reported
beside it, not counted. moto is seeded once (groups, rules, the table); before each run the
admin rules are authorized again and vigilo's state store is deleted; after it, boto3 checks
that no group still has its open rule and every group kept its HTTPS rule. The
number of HTTP requests moto served during each timed part is counted from its request log.
--quick takes 200 rules and 2 runs of each.
"""

import base64
import hashlib
import hmac
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from .common import (
    ROOT, VIGILO, Result, free_port, log, median, timed,
    write_project,
)
from .remediation import VENV, against, aws_env, floor_results, staged_race

RULES = 500
QUICK_RULES = 200
VOTERS = 4  # approval votes posted at once
READ_FIRST_THREADS = 8  # vigilo's ACTION_CONCURRENCY
CONN = "aws_bench"
ACCOUNT = "123456789012"  # moto's default account
SECRET = "catalog-bench-secret"
APPROVER = "bench"
FIXTURE = ROOT / "tests" / "fixtures" / "steampipe_more_tables.sql"
QUERY_FILE = ROOT / "queries" / "vpc_security_group_open_admin_ports.sql"
REMEDIATION_FILE = ROOT / "remediations" / "revoke_open_admin_port.toml"
PG_DB = "vigilo_bench_catalog"
FINAL = ("succeeded", "failed", "skipped", "unknown")

# Run with .venv-bench/bin/python: seeding, the floor and the check, all through boto3.
HELPER = r'''
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config

def client(url, threads):
    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                        config=Config(max_pool_connections=max(10, threads),
                                      retries={"mode": "standard", "max_attempts": 3}))

def perm(port, description):
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": description}]}

def seed(url, n, out):
    ec2 = client(url, 8)
    # One group at a time: moto's create_security_group is not safe to call concurrently.
    groups = [[ec2.create_security_group(GroupName=f"bench-sg-{i:04d}", Description="bench")["GroupId"],
               f"bench-sg-{i:04d}", 22 if i % 2 == 0 else 3389] for i in range(n)]
    def authorize(g):
        ec2.authorize_security_group_ingress(
            GroupId=g[0], IpPermissions=[perm(g[2], "admin from anywhere"), perm(443, "https")])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(authorize, groups))
    json.dump(groups, open(out, "w"))

def restore(url, rules_file):
    """Opens each group's admin port again (after a tool revoked it)."""
    ec2 = client(url, 8)
    def authorize(g):
        try:
            ec2.authorize_security_group_ingress(GroupId=g[0], IpPermissions=[perm(g[2], "admin from anywhere")])
        except ec2.exceptions.ClientError as e:
            if e.response["Error"]["Code"] != "InvalidPermission.Duplicate":
                raise
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(authorize, json.load(open(rules_file))))

def floor(url, rules_file, threads):
    rules = json.load(open(rules_file))
    ec2 = client(url, threads)
    def one(r):
        ec2.revoke_security_group_ingress(
            GroupId=r[0], IpPermissions=[{"IpProtocol": "tcp", "FromPort": r[2], "ToPort": r[2],
                                          "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, rules))
    print(time.monotonic() - started)

def floor_read_first(url, rules_file, threads):
    """What interface.md section 9 requires of vigilo, done directly: the groups read first, 100
    in each DescribeSecurityGroups (as vigilo reads a claimed batch), then each rule revoked
    only when the read shows it open, `threads` calls at a time."""
    rules = json.load(open(rules_file))
    ec2 = client(url, threads)
    def is_open(group, port):
        return any(p.get("FromPort") == port and any(r["CidrIp"] == "0.0.0.0/0" for r in p.get("IpRanges", []))
                   for p in group["IpPermissions"])
    def revoke(r):
        ec2.revoke_security_group_ingress(
            GroupId=r[0], IpPermissions=[{"IpProtocol": "tcp", "FromPort": r[2], "ToPort": r[2],
                                          "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    def read(chunk):
        return ec2.describe_security_groups(GroupIds=[r[0] for r in chunk])["SecurityGroups"]
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        # Every read first (the fewest calls, and no pool draining between chunks), then the revokes.
        chunks = [rules[i:i + 100] for i in range(0, len(rules), 100)]
        read_all = {g["GroupId"]: g for groups in pool.map(read, chunks) for g in groups}
        list(pool.map(revoke, [r for r in rules if r[0] in read_all and is_open(read_all[r[0]], r[2])]))
    print(time.monotonic() - started)

def verify(url, rules_file):
    rules = json.load(open(rules_file))
    ec2 = client(url, 8)
    groups = {}
    for page in ec2.get_paginator("describe_security_groups").paginate():
        for g in page["SecurityGroups"]:
            groups[g["GroupId"]] = {(p.get("FromPort"), r["CidrIp"])
                                    for p in g["IpPermissions"] for r in p.get("IpRanges", [])}
    bad = []
    for g, _, port in rules:
        have = groups.get(g)
        if have is None:
            bad.append(f"{g}: gone")
        elif (port, "0.0.0.0/0") in have:
            bad.append(f"{g}: port {port} still open")
        elif (443, "0.0.0.0/0") not in have:
            bad.append(f"{g}: lost its HTTPS rule")
    if bad:
        sys.exit(f"{len(bad)} of {len(rules)} groups are wrong, e.g. " + ", ".join(bad[:5]))
    print(len(rules))

cmd = sys.argv[1]
if cmd == "seed":
    seed(sys.argv[2], int(sys.argv[3]), sys.argv[4])
elif cmd == "restore":
    restore(sys.argv[2], sys.argv[3])
elif cmd == "floor":
    floor(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif cmd == "floor-read-first":
    floor_read_first(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif cmd == "verify":
    verify(sys.argv[2], sys.argv[3])
'''

POLICY = """policies:
  - name: bench-revoke-open-admin-ports
    resource: aws.security-group
    filters:
      - type: ingress
        Ports: [22, 3389]
        Cidr:
          value: "0.0.0.0/0"
    actions:
      - type: remove-permissions
        ingress: matched
"""


def token(approval_id):
    """An approval link token for APPROVER (src/token.rs): base64url(ID.APPROVER.0).hex(HMAC)."""
    payload = f"{approval_id}.{APPROVER}.0".encode()
    sig = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + sig


class Bench:
    def __init__(self, work, moto, pg_url, rules):
        self.work = work
        self.moto = moto
        self.pg_url = pg_url
        self.rules = rules
        self.env = aws_env(work)
        self.py = VENV / "bin" / "python"
        self.helper = work / "helper.py"
        self.helper.write_text(HELPER)
        self.rules_file = work / "rules.json"
        self.project = work / "vigilo"
        self.port = free_port()
        # The example query without its schedule (`vigilo run` only acts here), and the example
        # remediation without a deadline, so that a token's expiry is 0.
        query = re.sub(r"^-- schedule:.*\n", "", QUERY_FILE.read_text(), flags=re.M)
        remediation = re.sub(r"^timeout = .*\n", "", REMEDIATION_FILE.read_text(), flags=re.M)
        write_project(
            self.project,
            f'[state]\nurl = "sqlite://state.db"\n\n'
            f'[database.steampipe]\nurl = "{pg_url}"\n\n'
            f'[connection.aws.{CONN}]\nendpoint_url = "{moto.url}"\nregion = "us-east-1"\n\n'
            f'[server]\nlisten = "127.0.0.1:{self.port}"\nsecret = "{SECRET}"\n\n'
            f'[notifier.security]\nnotify = [{{ integration = "console" }}]\n\n'
            f'[approver.{APPROVER}]\n\n[group.security]\nmembers = ["{APPROVER}"]\n',
            {"vpc_security_group_open_admin_ports": query},
            {"revoke_open_admin_port": remediation},
        )
        self.policy = work / "policy.yml"
        self.policy.write_text(POLICY)
        self.calls = {}
        self.scans = []
        self.phases = []  # per vigilo run: (votes, after the last decision) in seconds
        self.seeded = False

    def helper_run(self, *args, explain=None):
        out = subprocess.run([self.py, self.helper, *map(str, args)], env=self.env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"catalog helper {args[0]} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}"
                     + (explain() if explain else ""))
        return out.stdout

    def prepare(self):
        """Opens the admin rules again; the first time, seeds moto and writes the table."""
        if self.seeded:
            self.helper_run("restore", self.moto.url, self.rules_file)
            return
        self.seeded = True
        self.moto.reset()
        self.helper_run("seed", self.moto.url, self.rules, self.rules_file)
        groups = json.loads(self.rules_file.read_text())
        assert len({g for g, _, _ in groups}) == self.rules, "seeding went wrong"
        ctx = f"'{{\"connection_name\": \"{CONN}\"}}'::jsonb"
        rows = []
        for g, name, port in groups:
            for p, description in ((port, "admin from anywhere"), (443, "https")):
                rows.append(f"('sgr-{g[3:]}-{p}', '{g}', '{name}', false, 'ingress', 'tcp', {p}, {p}, "
                            f"'0.0.0.0/0', null, '{description}', 'us-east-1', '{ACCOUNT}', {ctx})")
            rows.append(f"('sgr-{g[3:]}-out', '{g}', '{name}', true, 'egress', '-1', null, null, "
                        f"'0.0.0.0/0', null, null, 'us-east-1', '{ACCOUNT}', {ctx})")
        sql = ("begin;\ntruncate aws_vpc_security_group_rule;\n"
               "insert into aws_vpc_security_group_rule (security_group_rule_id, group_id, group_name, "
               "is_egress, type, ip_protocol, from_port, to_port, cidr_ipv4, cidr_ipv6, description, "
               "region, account_id, _ctx) values\n" + ",\n".join(rows) + ";\ncommit;\n")
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.pg_url],
                       input=sql, text=True, check=True, capture_output=True)

    def verify(self, label, wall, explain=None):
        self.helper_run("verify", self.moto.url, self.rules_file,
                        explain=lambda: f"\nafter {label} ({wall:.2f} s)" + (explain() if explain else ""))
        log(f"catalog: {label}: {wall:.2f} s ({self.calls[label][-1]} AWS requests)")
        return wall

    def vigilo(self):
        """Scans (untimed), starts `vigilo run`, then times the votes until every action ended."""
        self.prepare()
        for f in self.project.glob("state.db*"):
            f.unlink()
        scan = timed([VIGILO, "--dir", self.project, "scan"], env=self.env)
        self.scans.append(scan.wall)
        approvals = json.loads(subprocess.run(
            [VIGILO, "--dir", self.project, "approvals", "--format", "json"], env=self.env,
            capture_output=True, text=True, check=True).stdout)
        ids = [a["id"] for a in approvals if a["status"] == "pending"]
        if len(ids) != self.rules:
            sys.exit(f"vigilo scan opened {len(ids)} approvals, not {self.rules}")
        log_file = open(self.work / "vigilo-run.log", "w")
        run = subprocess.Popen([VIGILO, "--dir", self.project, "run"], env=self.env,
                               stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{self.port}"
            wait_until(lambda: ok_get(base + "/healthz"), 30, "vigilo run did not answer /healthz",
                       run, self.work / "vigilo-run.log")
            db = sqlite3.connect(f"file:{self.project / 'state.db'}?mode=ro", uri=True)
            offset = self.moto.log_size()
            started = time.monotonic()
            voting = threading.Thread(target=self.vote_all, args=(base, ids))
            voting.start()
            query = (f"select count(*) from actions where state in "
                     f"({', '.join(repr(s) for s in FINAL)})")
            # fetchall: a statement stepped to its end ends its read, so the next sees new commits.
            while db.execute(query).fetchall()[0][0] < self.rules:
                if run.poll() is not None:
                    sys.exit(f"vigilo run exited:\n{(self.work / 'vigilo-run.log').read_text()[-3000:]}")
                time.sleep(0.01)
            wall = time.monotonic() - started
            voting.join()
            self.calls.setdefault("vigilo", []).append(self.moto.requests_since(offset))
            states = dict(db.execute("select state, count(*) from actions group by state").fetchall())
            # The phases, by the store's own clock: the votes (first vote to last decision) and
            # what follows them (last decision to last action finished).
            first_vote, last_decided, last_finished = (stamp(t) for t in db.execute(
                "select (select min(at) from votes), (select max(decided_at) from approvals), "
                "(select max(finished_at) from actions)").fetchone())
            self.phases.append((last_decided - first_vote, last_finished - last_decided))
            db.close()
        finally:
            run.send_signal(signal.SIGTERM)
            try:
                run.wait(30)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
            log_file.close()
        if states.get("succeeded") != self.rules:
            sys.exit(f"vigilo's actions ended {states}, not {self.rules} succeeded; "
                     f"see {self.work / 'vigilo-run.log'}")
        return self.verify("vigilo", wall)

    def vote_all(self, base, ids):
        def one(approval_id):
            form = urllib.parse.urlencode({"token": token(approval_id), "option": "revoke",
                                           "reason": "benchmark"}).encode()
            with urllib.request.urlopen(f"{base}/approvals/{approval_id}", data=form, timeout=60) as r:
                r.read()
        with ThreadPoolExecutor(VOTERS) as pool:
            list(pool.map(one, ids))

    def custodian(self):
        self.prepare()
        out = self.work / "custodian-out"
        shutil.rmtree(out, ignore_errors=True)
        self.env["AWS_ENDPOINT_URL"] = self.moto.url  # c7n has no endpoint option; boto3 reads this
        try:
            offset = self.moto.log_size()
            t = timed([VENV / "bin" / "custodian", "run", "--cache-period", "0", "-s", out,
                       "--region", "us-east-1", self.policy], cwd=self.work, env=self.env)
            self.calls.setdefault("custodian", []).append(self.moto.requests_since(offset))
        finally:
            self.env.pop("AWS_ENDPOINT_URL")
        for meta in out.glob("*/metadata.json"):  # what c7n counted itself
            m = json.loads(meta.read_text())
            log(f"catalog: custodian's api-stats: {m.get('api-stats')}, "
                f"resources: {m.get('metrics', [{}])[0].get('Value') if m.get('metrics') else '?'}")
        return self.verify("custodian", t.wall)

    def floor(self, threads, how="floor"):
        self.prepare()
        label = f"{how}-{threads}"
        offset = self.moto.log_size()
        wall = float(self.helper_run(how, self.moto.url, self.rules_file, threads))
        self.calls.setdefault(label, []).append(self.moto.requests_since(offset))
        return self.verify(label, wall)

    def more(self):
        """Timed in each round of `race` beside the rest: the floor that reads first, with as
        many calls at a time as vigilo makes (ACTION_CONCURRENCY, 8)."""
        return [(f"floor-read-first-{READ_FIRST_THREADS}",
                 lambda: self.floor(READ_FIRST_THREADS, "floor-read-first"))]


def stamp(text):
    """Seconds since the epoch of a time the state store wrote (RFC 3339, `Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ok_get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_until(check, seconds, why, proc, log_path):
    deadline = time.monotonic() + seconds
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{why}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.05)


def run(quick, runs):
    rules = QUICK_RULES if quick else RULES
    n = min(runs, 2) if quick else runs
    log(f"catalog: {rules} security-group rules on moto, revoked after approval; median of {n} runs")
    b, med, calls, best = staged_race("catalog", PG_DB, "aws_vpc_security_group_rule", FIXTURE,
                                      lambda work, moto, pg: Bench(work, moto, pg, rules), n)
    v = med["vigilo"]
    rf = f"floor-read-first-{READ_FIRST_THREADS}"
    results = against(
        med, calls, best,
        (f"catalog, {rules} ingress rules on moto after approval: vigilo against Cloud Custodian", 2),
        (f"catalog, {rules} ingress rules on moto: vigilo against the boto3 floor ({best} threads)", 1.3))
    results += [
        Result(f"catalog, {rules} ingress rules on moto: vigilo against a boto3 floor that reads first as "
               f"section 9 requires (DescribeSecurityGroups of 100 groups each, then the revokes, "
               f"{READ_FIRST_THREADS} threads)",
               f"{v:.2f} s", f"{med[rf]:.2f} s ({calls[rf]} calls)", v / med[rf], "<= 1.3×", v / med[rf] <= 1.3),
        Result(f"catalog: of vigilo's figure, the {rules} votes (first vote to last approval decided)",
               f"{median([p[0] for p in b.phases]):.2f} s", "", None, "(information)", None),
        Result("catalog: of vigilo's figure, the actions left after the last approval decided "
               "(to the last action finished)",
               f"{median([p[1] for p in b.phases]):.2f} s", "", None, "(information)", None),
        Result(f"catalog: `vigilo scan` finding the {rules} rules and opening their approvals (not counted)",
               f"{median(b.scans):.2f} s", "", None, "(information)", None),
    ]
    results.extend(floor_results(f"catalog floor: boto3 RevokeSecurityGroupIngress × {rules}", med, calls))
    return results
