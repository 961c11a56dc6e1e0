-- title: S3 buckets without an owner tag
-- database: steampipe
-- schedule: daily
-- primary_key: account_id, name
-- remediation: tag_bucket_owner
-- severity: low
--
-- Every bucket should name the team that owns it (tag `owner`), so that a finding
-- about it reaches someone. The remediation asks which team owns each untagged
-- bucket and tags it, or accepts the risk for 30 days.
select account_id, name, region,
       _ctx ->> 'connection_name' as conn_name
from aws_s3_bucket
where tags is null or not (tags ? 'owner')
