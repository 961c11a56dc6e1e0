-- title: S3 buckets without versioning
-- database: steampipe
-- schedule: daily
-- primary_key: account_id, name
-- on_first_run: baseline
-- remediation: enable_bucket_versioning
-- severity: medium
--
-- Versioning protects objects from overwrites and deletion. The first run only
-- records today's buckets (baseline); buckets created without versioning later
-- become findings.
select account_id, name, region,
       _ctx ->> 'connection_name' as conn_name
from aws_s3_bucket
where not versioning_enabled
