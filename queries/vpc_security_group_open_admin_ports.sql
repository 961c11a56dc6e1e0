-- title: Security groups open to the world on SSH (22) or RDP (3389)
-- database: steampipe
-- schedule: hourly
-- primary_key: account_id, security_group_rule_id
-- remediation: revoke_open_admin_port
-- severity: high
--
-- CIS AWS Foundations 5.2 and 5.3: no security group allows ingress from 0.0.0.0/0
-- or ::/0 to remote server administration ports. A rule for all traffic (-1) or a
-- port range that covers 22 or 3389 counts too.
select security_group_rule_id, group_id, group_name, account_id, region,
       _ctx ->> 'connection_name' as conn_name,
       ip_protocol, from_port, to_port,
       coalesce(cidr_ipv4::text, cidr_ipv6::text) as cidr
from aws_vpc_security_group_rule
where not is_egress
  and (cidr_ipv4 = '0.0.0.0/0' or cidr_ipv6 = '::/0')
  and (ip_protocol = '-1'
       or (ip_protocol = 'tcp'
           and ((from_port <= 22 and to_port >= 22) or (from_port <= 3389 and to_port >= 3389))))
