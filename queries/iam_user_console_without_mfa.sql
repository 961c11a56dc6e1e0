-- title: IAM users who can sign in to the console without MFA
-- database: steampipe
-- schedule: 0 */6 * * *
-- primary_key: user_arn
-- ignore_columns: password_last_used
-- remediation: remove_console_password
-- severity: critical
--
-- CIS AWS Foundations 1.10: MFA for every IAM user with a console password.
select user_arn, user_name, account_id,
       _ctx ->> 'connection_name' as conn_name,
       password_last_used
from aws_iam_credential_report
where password_enabled and not mfa_active
