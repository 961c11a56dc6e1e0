//! `aws.ec2.stop_instance` and its reversal `aws.ec2.start_instance`, over EC2's Query API
//! signed by vigilo.
//!
//! Both read `DescribeInstances` first: an instance that is gone or terminated is skipped;
//! one already stopped (stopping) or running (pending) needs no change.

use serde_json::{Value, json};

use super::ec2_security_group::EC2_VERSION;
use super::params::{self, Param, Params};
use super::read_first::{Aws, Found, ReadFirst, Written, gone_on};

/// `aws.ec2.stop_instance` or `aws.ec2.start_instance` (what undoes a stop, and the reverse).
pub struct InstanceAction {
    /// Its type.
    name: &'static str,
    /// The EC2 action that changes the state.
    operation: &'static str,
    /// The states that need no change.
    wanted: &'static [&'static str],
    /// The type that reverses it.
    reverse: &'static str,
}

/// `aws.ec2.stop_instance`.
pub const STOP: InstanceAction = InstanceAction {
    name: "aws.ec2.stop_instance",
    operation: "StopInstances",
    wanted: &["stopped", "stopping"],
    reverse: "aws.ec2.start_instance",
};

/// `aws.ec2.start_instance`.
pub const START: InstanceAction = InstanceAction {
    name: "aws.ec2.start_instance",
    operation: "StartInstances",
    wanted: &["running", "pending"],
    reverse: "aws.ec2.stop_instance",
};

const PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("instance_id"),
];

/// EC2's answers when an instance does not exist.
const GONE: [&str; 2] = ["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"];

/// The instance's state (`{"state": "running"}`), or `Gone` (also when terminated).
async fn read(aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
    let id = p.text("instance_id")?;
    let gone = |why: &str| {
        Found::Gone(format!(
            "instance {id} {why} in connection {}",
            aws.connection.name()
        ))
    };
    let q = [("InstanceId.1".to_string(), id.to_string())];
    let answer = match aws.query("ec2", EC2_VERSION, "DescribeInstances", &q).await {
        Ok(a) => a,
        Err(e) if gone_on(&e, &GONE) => return Ok(gone("no longer exists")),
        Err(e) => return Err(e.to_string()),
    };
    let state = answer
        .body
        .items("reservationSet")
        .flat_map(|r| r.items("instancesSet"))
        .find(|i| i.text_of("instanceId") == Some(id))
        .and_then(|i| i.child("instanceState"))
        .and_then(|s| s.text_of("name"))
        .map(str::to_string);
    match state.as_deref() {
        None => Ok(gone("no longer exists")),
        Some(s @ ("terminated" | "shutting-down")) => Ok(gone(&format!("is {s}"))),
        Some(s) => Ok(Found::State(json!({"state": s}))),
    }
}

/// `StopInstances`/`StartInstances` of the one instance.
async fn write(aws: &Aws<'_>, p: &Params<'_>, action: &'static str) -> Result<Written, String> {
    let id = p.text("instance_id")?;
    let q = [("InstanceId.1".to_string(), id.to_string())];
    match aws.query("ec2", EC2_VERSION, action, &q).await {
        Ok(answer) => Ok(Written::Done(answer.request_id)),
        Err(e) if gone_on(&e, &GONE) => Ok(Written::Gone(format!(
            "instance {id} no longer exists in connection {}",
            aws.connection.name()
        ))),
        Err(e) => Err(e.to_string()),
    }
}

/// "instance i-1 is stopped" when its state is one of `states`.
fn state_in(p: &Params<'_>, state: &Value, states: &[&str]) -> Option<String> {
    let now = state["state"].as_str()?;
    states.contains(&now).then(|| {
        format!(
            "instance {} is {now}",
            p.opt_text("instance_id").unwrap_or_default()
        )
    })
}

#[async_trait::async_trait]
impl ReadFirst for InstanceAction {
    fn name(&self) -> &'static str {
        self.name
    }

    fn params(&self) -> &'static [Param] {
        PARAMS
    }

    fn call(&self, p: &Params<'_>) -> String {
        format!(
            "ec2:{} InstanceId.1={}",
            self.operation,
            p.opt_text("instance_id").unwrap_or_default()
        )
    }

    fn operation(&self) -> &'static str {
        self.operation
    }

    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
        read(aws, p).await
    }

    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String> {
        Ok(state_in(p, state, self.wanted))
    }

    async fn write(
        &self,
        aws: &Aws<'_>,
        p: &Params<'_>,
        _before: &Value,
    ) -> Result<Written, String> {
        write(aws, p, self.operation).await
    }

    fn undo(&self, p: &Params<'_>, _before: &Value) -> Result<(&'static str, Value), String> {
        Ok((
            self.reverse,
            json!({"instance_id": p.values["instance_id"]}),
        ))
    }
}
