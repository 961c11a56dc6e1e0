"""A Steampipe-shaped `aws_iam_access_key` table in PostgreSQL, the seed query over it, and
churn (1% of the selected rows changed, 1% new, 1% gone) between runs."""

from pathlib import Path

from .common import psql

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "steampipe_aws_iam_access_key.sql"

# The seed query's shape with a timestamptz instead of a volatile age: primary key
# access_key_id, five columns, a jsonb extraction. Selects the 90% of rows that are Active.
QUERY = (
    "select access_key_id, user_name, account_id, _ctx ->> 'connection_name' as conn_name, "
    "create_date from {table} where create_date < now() - interval '90 days' and status = 'Active'"
)

ROWS = """
insert into {table}
  (access_key_id, user_name, status, create_date, access_key_last_used_date,
   access_key_last_used_service, access_key_last_used_region, title, akas, account_id,
   sp_connection_name, sp_ctx, _ctx)
select 'AKIA' || lpad(i::text, 16, '0'), 'user' || (i / 2), case when i % 10 = 0 then 'Inactive' else 'Active' end,
       timestamptz '2026-01-01' - (100 + i % 1000) * interval '1 day' - (i % 86400) * interval '1 second',
       timestamptz '2026-06-01' - (i % 50) * interval '1 day', 'iam', 'us-east-1',
       'AKIA' || lpad(i::text, 16, '0'),
       jsonb_build_array('arn:aws:iam::' || (100000000000 + i % 40) || ':user/user' || (i / 2) || '/accesskey/AKIA' || lpad(i::text, 16, '0')),
       (100000000000 + i % 40)::text, 'aws_' || (i % 40),
       jsonb_build_object('connection_name', 'aws_' || (i % 40), 'steampipe', jsonb_build_object('sdk_version', '5.11.0')),
       jsonb_build_object('connection_name', 'aws_' || (i % 40), 'steampipe', jsonb_build_object('sdk_version', '5.11.0'))
from generate_series({first}, {last}) as i
"""


def ddl(table):
    """The fixture's table definition, renamed to `table`."""
    text = FIXTURE.read_text()
    start = text.index("drop table if exists aws_iam_access_key;")
    end = text.index(");", text.index("create table aws_iam_access_key")) + 2
    return text[start:end].replace("aws_iam_access_key", table)


def create(url, table, n):
    """Creates `table` with `n` rows; about 90% of them match QUERY."""
    psql(url, ddl(table))
    psql(url, ROWS.format(table=table, first=1, last=n))
    psql(url, f"alter table {table} add primary key (access_key_id)")
    psql(url, f"vacuum analyze {table}")


def query(table):
    return QUERY.format(table=table)


class Churn:
    """Changes 1% of the selected rows, deletes 1% and adds 1% as new, each time it is called."""

    def __init__(self, url, table, n):
        self.url, self.table = url, table
        self.selected = n * 9 // 10
        self.next_id = n + 1
        self.round = 0

    def __call__(self):
        m = self.selected // 100
        self.round += 1
        t, sel = self.table, f"select access_key_id from {self.table} where status = 'Active' order by random() limit {m}"
        psql(self.url, f"update {t} set user_name = user_name || '-r{self.round}' "
                       f"where access_key_id in ({sel})")
        psql(self.url, f"delete from {t} where access_key_id in ({sel})")
        # New ids are all Active and old (i % 10 = 0 rows would be Inactive: skip them).
        first, last = self.next_id, self.next_id + m * 10 // 9 + 10
        psql(self.url, ROWS.format(table=t, first=first, last=last) + f" where i % 10 <> 0 limit {m}")
        self.next_id = last + 1
        psql(self.url, f"analyze {t}")
        return m
