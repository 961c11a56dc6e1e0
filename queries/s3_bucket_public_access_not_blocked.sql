-- title: S3 buckets without a full public access block
-- database: steampipe
-- schedule: daily
-- primary_key: account_id, name
-- remediation: block_bucket_public_access
-- severity: high
--
-- CIS AWS Foundations 2.1.4: every bucket blocks public access (all four settings of
-- its public access block on). A bucket with no block at all shows them as null.
select account_id, name, region,
       _ctx ->> 'connection_name' as conn_name
from aws_s3_bucket
where not (coalesce(block_public_acls, false) and coalesce(ignore_public_acls, false)
           and coalesce(block_public_policy, false) and coalesce(restrict_public_buckets, false))
