//! `aws.ec2.revoke_security_group_ingress` and its reversal
//! `aws.ec2.authorize_security_group_ingress`: one inbound rule of a security group
//! (protocol, ports, one IPv4 or IPv6 CIDR), over EC2's Query API signed by vigilo.
//!
//! Both read `DescribeSecurityGroups` first: a group that is gone is skipped, a rule already
//! absent (or present) needs no change. The rule's description is kept, so an undo puts the
//! rule back as it was. The groups of a batch of actions are read in one call
//! ([`ReadFirst::read_many`]: `GroupId.1`…`GroupId.N`).

use std::str::FromStr;

use serde_json::{Value, json};

use super::params::{self, Kind, Need, Param, Params};
use super::read_first::{Aws, Found, ReadFirst, Written, gone_on, pairs};
use crate::aws::xml::Element;

/// EC2's API version.
pub(super) const EC2_VERSION: &str = "2016-11-15";

/// `aws.ec2.revoke_security_group_ingress` or `aws.ec2.authorize_security_group_ingress`
/// (what undoes a revoke).
pub struct IngressAction {
    /// Authorize (true) or revoke.
    authorize: bool,
}

/// `aws.ec2.revoke_security_group_ingress`.
pub const REVOKE: IngressAction = IngressAction { authorize: false };

/// `aws.ec2.authorize_security_group_ingress`.
pub const AUTHORIZE: IngressAction = IngressAction { authorize: true };

const PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("group_id"),
    Param::text("protocol"),
    Param::new("from_port", Kind::Int, Need::Optional),
    Param::new("to_port", Kind::Int, Need::Optional),
    Param::text("cidr"),
    Param::new("description", Kind::Text, Need::Optional),
];

/// EC2's answer when a group does not exist.
const GROUP_GONE: [&str; 2] = ["InvalidGroup.NotFound", "InvalidGroupId.NotFound"];

/// A protocol as EC2 names it: `tcp`, `udp`, `icmp`, `icmpv6`, a number, or `-1` (all; `all`
/// is accepted for it).
fn protocol(given: &str) -> Result<String, String> {
    let p = given.trim().to_ascii_lowercase();
    match p.as_str() {
        "tcp" | "udp" | "icmp" | "icmpv6" | "-1" => Ok(p),
        "all" => Ok("-1".into()),
        n if n.parse::<u8>().is_ok() => Ok(n.to_string()),
        _ => Err(format!(
            "must be tcp, udp, icmp, icmpv6, -1 (all) or a protocol number, not {given:?}"
        )),
    }
}

/// Whether a protocol takes ports (EC2 ignores them for `-1` and other numbers).
fn has_ports(protocol: &str) -> bool {
    matches!(
        protocol,
        "tcp" | "udp" | "icmp" | "icmpv6" | "6" | "17" | "1" | "58"
    )
}

/// The rule an action names, checked.
struct Rule {
    group: String,
    protocol: String,
    ports: Option<(i64, i64)>,
    cidr: cidr::IpCidr,
    description: Option<String>,
}

impl Rule {
    fn of(p: &Params<'_>) -> Result<Rule, String> {
        let err = |k: &str, e: String| format!("{}: {k}: {e}; nothing was called", p.kind);
        let protocol = protocol(p.text("protocol")?).map_err(|e| err("protocol", e))?;
        let ports = if has_ports(&protocol) {
            match (p.opt_int("from_port")?, p.opt_int("to_port")?) {
                (Some(from), Some(to)) => Some((from, to)),
                (Some(port), None) | (None, Some(port)) => Some((port, port)),
                (None, None) => {
                    return Err(err(
                        "from_port",
                        format!("protocol {protocol} needs from_port and to_port"),
                    ));
                }
            }
        } else {
            None
        };
        let given = p.text("cidr")?;
        let cidr = cidr::IpCidr::from_str(given.trim())
            .map_err(|e| err("cidr", format!("{given:?} is not a CIDR: {e}")))?;
        Ok(Rule {
            group: p.text("group_id")?.to_string(),
            protocol,
            ports,
            cidr,
            description: p.opt_text("description").map(str::to_string),
        })
    }

    /// The Query parameters of the rule (`IpPermissions.1.…`).
    fn query(&self, with_description: bool) -> Vec<(String, String)> {
        let mut q = vec![
            ("GroupId".to_string(), self.group.clone()),
            ("IpPermissions.1.IpProtocol".into(), self.protocol.clone()),
        ];
        if let Some((from, to)) = self.ports {
            q.push(("IpPermissions.1.FromPort".into(), from.to_string()));
            q.push(("IpPermissions.1.ToPort".into(), to.to_string()));
        }
        let (range, field) = match self.cidr {
            cidr::IpCidr::V4(_) => ("IpRanges", "CidrIp"),
            cidr::IpCidr::V6(_) => ("Ipv6Ranges", "CidrIpv6"),
        };
        q.push((
            format!("IpPermissions.1.{range}.1.{field}"),
            self.cidr.to_string(),
        ));
        if let Some(d) = self.description.as_ref().filter(|_| with_description) {
            q.push((format!("IpPermissions.1.{range}.1.Description"), d.clone()));
        }
        q
    }

    /// The rule in words.
    fn words(&self) -> String {
        let ports = match self.ports {
            Some((from, to)) if from == to => format!(" port {from}"),
            Some((from, to)) => format!(" ports {from}-{to}"),
            None => String::new(),
        };
        let protocol = if self.protocol == "-1" {
            "all traffic"
        } else {
            &self.protocol
        };
        format!("{protocol}{ports} from {} into {}", self.cidr, self.group)
    }

    /// Whether a group (a `securityGroupInfo` item) has the rule: `{"rule": bool, "description": …}`.
    fn state_in(&self, group: &Element) -> Value {
        let found = group
            .items("ipPermissions")
            .find_map(|perm| self.found_in(perm));
        match found {
            Some(description) if !description.is_empty() => {
                json!({"rule": true, "description": description})
            }
            Some(_) => json!({"rule": true}),
            None => json!({"rule": false}),
        }
    }

    /// Whether one of a group's `ipPermissions` items grants this rule; its description if so.
    fn found_in(&self, permission: &Element) -> Option<String> {
        let proto = permission
            .text_of("ipProtocol")
            .and_then(|p| protocol(p).ok())?;
        if proto != self.protocol {
            return None;
        }
        if let Some((from, to)) = self.ports {
            let port = |k: &str| permission.text_of(k).and_then(|v| v.parse::<i64>().ok());
            if port("fromPort") != Some(from) || port("toPort") != Some(to) {
                return None;
            }
        }
        let (list, field) = match self.cidr {
            cidr::IpCidr::V4(_) => ("ipRanges", "cidrIp"),
            cidr::IpCidr::V6(_) => ("ipv6Ranges", "cidrIpv6"),
        };
        permission.items(list).find_map(|range| {
            let c = range
                .text_of(field)
                .and_then(|c| cidr::IpCidr::from_str(c).ok())?;
            (c == self.cidr).then(|| range.text_of("description").unwrap_or_default().to_string())
        })
    }
}

/// Whether the rule is in its group: `{"rule": bool, "description": …}`, or `Gone`.
async fn read(aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
    let rule = Rule::of(p)?;
    let q = [("GroupId.1".to_string(), rule.group.clone())];
    let answer = match aws
        .query("ec2", EC2_VERSION, "DescribeSecurityGroups", &q)
        .await
    {
        Ok(a) => a,
        Err(e) if gone_on(&e, &GROUP_GONE) => {
            return Ok(Found::Gone(format!(
                "security group {} no longer exists in connection {} ({})",
                rule.group,
                aws.connection.name(),
                e.code().unwrap_or_default()
            )));
        }
        Err(e) => return Err(e.to_string()),
    };
    let Some(group) = answer.body.items("securityGroupInfo").next() else {
        return Ok(Found::Gone(format!(
            "security group {} no longer exists in connection {}",
            rule.group,
            aws.connection.name()
        )));
    };
    Ok(Found::State(rule.state_in(group)))
}

/// Reads the groups of several rules in one `DescribeSecurityGroups`; a group missing from the
/// answer is left to its action's own read. A group that is gone fails the whole call
/// (`InvalidGroup.NotFound`), so then every action reads its own.
async fn read_many(aws: &Aws<'_>, ps: &[Params<'_>]) -> Result<Vec<Option<Found>>, String> {
    let rules: Vec<Option<Rule>> = ps.iter().map(|p| Rule::of(p).ok()).collect();
    let mut groups: Vec<&str> = rules.iter().flatten().map(|r| r.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    let q: Vec<(String, String)> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (format!("GroupId.{}", i + 1), g.to_string()))
        .collect();
    let answer = aws
        .query("ec2", EC2_VERSION, "DescribeSecurityGroups", &q)
        .await
        .map_err(|e| e.to_string())?;
    let by_id: std::collections::HashMap<&str, &Element> = answer
        .body
        .items("securityGroupInfo")
        .filter_map(|g| Some((g.text_of("groupId")?, g)))
        .collect();
    Ok(rules
        .iter()
        .map(|rule| {
            let rule = rule.as_ref()?;
            Some(Found::State(rule.state_in(by_id.get(rule.group.as_str())?)))
        })
        .collect())
}

/// The rule's parameters again, for the reversal (with the description read before).
fn same(p: &Params<'_>, before: &Value) -> Value {
    let mut v = json!({});
    for k in ["group_id", "protocol", "from_port", "to_port", "cidr"] {
        if !p.values[k].is_null() {
            v[k] = p.values[k].clone();
        }
    }
    if let Some(d) = before["description"]
        .as_str()
        .or_else(|| p.opt_text("description"))
    {
        v["description"] = json!(d);
    }
    v
}

/// A write of the rule: `action` with the rule's parameters; `gone` codes mean nothing to do.
async fn write(
    aws: &Aws<'_>,
    p: &Params<'_>,
    action: &'static str,
    gone: &[&str],
    before: &Value,
) -> Result<Written, String> {
    let mut rule = Rule::of(p)?;
    if rule.description.is_none() {
        rule.description = before["description"].as_str().map(str::to_string);
    }
    match aws
        .query(
            "ec2",
            EC2_VERSION,
            action,
            &rule.query(action.starts_with("Authorize")),
        )
        .await
    {
        Ok(answer) => Ok(Written::Done(answer.request_id)),
        Err(e) if gone_on(&e, &GROUP_GONE) || gone_on(&e, gone) => Ok(Written::Gone(format!(
            "{} in connection {} ({})",
            rule.words(),
            aws.connection.name(),
            e.code().unwrap_or_default()
        ))),
        Err(e) => Err(e.to_string()),
    }
}

/// The call's line.
fn line(action: &str, p: &Params<'_>) -> String {
    match Rule::of(p) {
        Ok(rule) => format!(
            "ec2:{action} {}",
            pairs(&rule.query(action.starts_with("Authorize")))
        ),
        Err(_) => format!("ec2:{action} {}", p.values),
    }
}

/// Checks protocol, ports and cidr as written.
fn check(name: &str, value: &Value) -> Result<Option<Value>, String> {
    match (name, value) {
        ("protocol", Value::String(s)) => protocol(s).map(|p| Some(Value::String(p))),
        ("cidr", Value::String(s)) => cidr::IpCidr::from_str(s.trim())
            .map(|_| None)
            .map_err(|e| format!("{s:?} is not an IPv4 or IPv6 CIDR ({e})")),
        ("from_port" | "to_port", Value::Number(n)) => match n.as_i64() {
            Some(-1..=65535) => Ok(None),
            _ => Err(format!("must be a port from 0 to 65535 (or -1), not {n}")),
        },
        _ => Ok(None),
    }
}

#[async_trait::async_trait]
impl ReadFirst for IngressAction {
    fn name(&self) -> &'static str {
        if self.authorize {
            "aws.ec2.authorize_security_group_ingress"
        } else {
            "aws.ec2.revoke_security_group_ingress"
        }
    }

    fn params(&self) -> &'static [Param] {
        PARAMS
    }

    fn check(&self, name: &str, value: &Value) -> Result<Option<Value>, String> {
        check(name, value)
    }

    fn call(&self, p: &Params<'_>) -> String {
        line(self.operation(), p)
    }

    fn operation(&self) -> &'static str {
        if self.authorize {
            "AuthorizeSecurityGroupIngress"
        } else {
            "RevokeSecurityGroupIngress"
        }
    }

    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
        read(aws, p).await
    }

    fn target(&self, p: &Params<'_>) -> Option<String> {
        Rule::of(p).ok().map(|r| r.words())
    }

    async fn read_many(
        &self,
        aws: &Aws<'_>,
        ps: &[Params<'_>],
    ) -> Result<Vec<Option<Found>>, String> {
        read_many(aws, ps).await
    }

    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String> {
        Ok((state["rule"] == json!(self.authorize)).then(|| {
            let words = Rule::of(p).map(|r| r.words()).unwrap_or_default();
            if self.authorize {
                format!("a rule allows {words}")
            } else {
                format!("no rule allows {words}")
            }
        }))
    }

    async fn write(
        &self,
        aws: &Aws<'_>,
        p: &Params<'_>,
        before: &Value,
    ) -> Result<Written, String> {
        let gone: &[&str] = if self.authorize {
            &[]
        } else {
            &["InvalidPermission.NotFound"]
        };
        write(aws, p, self.operation(), gone, before).await
    }

    fn undo(&self, p: &Params<'_>, before: &Value) -> Result<(&'static str, Value), String> {
        let reverse = if self.authorize { REVOKE } else { AUTHORIZE };
        Ok((reverse.name(), same(p, before)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_ports_and_cidrs_are_checked() {
        assert_eq!(check("protocol", &json!("TCP")), Ok(Some(json!("tcp"))));
        assert_eq!(check("protocol", &json!("all")), Ok(Some(json!("-1"))));
        assert!(
            check("protocol", &json!("tcpp"))
                .unwrap_err()
                .contains("must be tcp")
        );
        assert_eq!(check("cidr", &json!("::/0")), Ok(None));
        assert!(check("cidr", &json!("0.0.0.0/33")).is_err());
        assert!(check("cidr", &json!("10.0.0.1/8")).is_err());
        assert!(check("from_port", &json!(70000)).is_err());
        assert_eq!(check("to_port", &json!(443)), Ok(None));
    }

    #[test]
    fn a_rule_is_found_among_a_groups_permissions() {
        let v = json!({"group_id": "sg-1", "protocol": "tcp", "from_port": "22", "to_port": 22, "cidr": "0.0.0.0/0"});
        let rule = Rule::of(&Params::new("t", &v)).unwrap();
        let perm = Element::parse(
            "<item><ipProtocol>tcp</ipProtocol><fromPort>22</fromPort><toPort>22</toPort><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp><description>ssh</description></item></ipRanges></item>",
        )
        .unwrap();
        assert_eq!(rule.found_in(&perm).as_deref(), Some("ssh"));
        let other = Element::parse(
            "<item><ipProtocol>tcp</ipProtocol><fromPort>80</fromPort><toPort>80</toPort><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges></item>",
        )
        .unwrap();
        assert_eq!(rule.found_in(&other), None);
        assert_eq!(
            pairs(&rule.query(false)),
            "GroupId=sg-1 IpPermissions.1.IpProtocol=tcp IpPermissions.1.FromPort=22 IpPermissions.1.ToPort=22 IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0"
        );
    }
}
