-- title: IAM access keys active for more than 90 days
-- database: steampipe
-- schedule: 0 * * * *
-- primary_key: access_key_id
-- ignore_columns: age_days
-- remediation: deactivate_iam_access_key
-- severity: high
--
-- CIS AWS Foundations 1.14: access keys should be rotated every 90 days or less.
-- conn_name tells which Steampipe connection (AWS account) the key belongs to.
select access_key_id, user_name, account_id,
       _ctx ->> 'connection_name' as conn_name,
       date_part('day', now() - create_date) as age_days
from aws_iam_access_key
where create_date < now() - interval '90 days' and status = 'Active'
