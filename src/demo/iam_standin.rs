//! The demo's stand-in for the AWS IAM (and STS) Query API, on a loopback port.
//!
//! It speaks the protocol the AWS SDK speaks to IAM: a form-encoded `POST /` with `Action`
//! and its parameters, answered in AWS's XML (`ListAccessKeysResponse`,
//! `UpdateAccessKeyResponse`, `GetCallerIdentityResponse`, and `ErrorResponse` with
//! `NoSuchEntity`), as the IAM API reference documents them. The keys are the demo
//! inventory's rows, so a deactivation shows in the next scan. The account is told by who
//! signed (the access key id in the `Authorization` header); signatures are not checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, params};

/// IAM's XML namespace.
const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// STS's XML namespace.
const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The running stand-in: its port and the calls it answered.
pub struct IamStandin {
    /// Where it listens on 127.0.0.1.
    pub port: u16,
    /// One line per call, in order.
    calls: Arc<Mutex<Vec<String>>>,
}

/// What the handler needs: the inventory the keys live in, and the call log.
struct Standin {
    inventory: PathBuf,
    calls: Arc<Mutex<Vec<String>>>,
    requests: Mutex<u64>,
}

impl IamStandin {
    /// Starts serving `inventory`'s `aws_iam_access_key` table on a free port.
    pub async fn start(inventory: PathBuf) -> Result<IamStandin> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let calls: Arc<Mutex<Vec<String>>> = Arc::default();
        let state = Arc::new(Standin {
            inventory,
            calls: Arc::clone(&calls),
            requests: Mutex::new(0),
        });
        let app = axum::Router::new().fallback(answer).with_state(state);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "demo IAM stand-in stopped");
            }
        });
        Ok(IamStandin { port, calls })
    }

    /// The calls answered so far, one line each (`UpdateAccessKey UserName=… (account …)`).
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// One Query API request: `Action` and its parameters, answered from the inventory.
async fn answer(State(s): State<Arc<Standin>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> =
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .unwrap_or_default()
            .into_iter()
            .collect();
    let param = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let account = signer_account(&headers);
    let request_id = {
        let mut n = s.requests.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        format!("vigilo-demo-{n:08}")
    };
    let action = param("Action");
    let result = match action {
        "GetCallerIdentity" => Ok(caller_identity(&account, &request_id)),
        "ListAccessKeys" => list_access_keys(&s, &account, param("UserName"), &request_id),
        "UpdateAccessKey" => update_access_key(
            &s,
            &account,
            [param("UserName"), param("AccessKeyId"), param("Status")],
            &request_id,
        ),
        other => Err((
            400,
            "InvalidAction",
            format!("the demo's IAM stand-in does not implement {other:?}"),
        )),
    };
    let (status, xml) = match result {
        Ok(xml) => (200, xml),
        Err((status, code, message)) => (status, error(code, &message, &request_id)),
    };
    if action != "GetCallerIdentity"
        && let Ok(mut calls) = s.calls.lock()
    {
        let mut line = action.to_string();
        for k in ["UserName", "AccessKeyId", "Status"] {
            if let Some(v) = form.get(k) {
                line.push_str(&format!(" {k}={v}"));
            }
        }
        if status != 200 {
            line.push_str(&format!(" -> HTTP {status}"));
        }
        calls.push(line);
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "text/xml")],
        xml,
    )
        .into_response()
}

/// The account of the signing key id: the demo's key ids end in their account's twelve digits.
fn signer_account(headers: &HeaderMap) -> String {
    let akid = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or_default();
    let digits: String = akid.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 12 {
        digits[digits.len() - 12..].to_string()
    } else {
        "000000000000".to_string()
    }
}

/// A failed call: HTTP status, AWS error code, message.
type Failure = (u16, &'static str, String);

fn no_such_user(user: &str) -> Failure {
    (
        404,
        "NoSuchEntity",
        format!("The user with name {user} cannot be found."),
    )
}

fn caller_identity(account: &str, request_id: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"{STS_NS}\"><GetCallerIdentityResult>\
         <Arn>arn:aws:iam::{account}:user/vigilo-demo</Arn><UserId>AIDAVIGILODEMO</UserId>\
         <Account>{account}</Account></GetCallerIdentityResult>\
         <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
         </GetCallerIdentityResponse>"
    )
}

fn list_access_keys(
    s: &Standin,
    account: &str,
    user: &str,
    request_id: &str,
) -> Result<String, Failure> {
    let keys = read_keys(s, account, user).map_err(internal)?;
    if keys.is_empty() {
        return Err(no_such_user(user));
    }
    let members: String = keys
        .iter()
        .map(|(id, status, created)| {
            format!(
                "<member><UserName>{}</UserName><AccessKeyId>{}</AccessKeyId>\
                 <Status>{}</Status><CreateDate>{}</CreateDate></member>",
                escape(user),
                escape(id),
                escape(status),
                iso_seconds(created)
            )
        })
        .collect();
    Ok(format!(
        "<ListAccessKeysResponse xmlns=\"{IAM_NS}\"><ListAccessKeysResult>\
         <UserName>{}</UserName><AccessKeyMetadata>{members}</AccessKeyMetadata>\
         <IsTruncated>false</IsTruncated></ListAccessKeysResult>\
         <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
         </ListAccessKeysResponse>",
        escape(user)
    ))
}

fn update_access_key(
    s: &Standin,
    account: &str,
    [user, key, status]: [&str; 3],
    request_id: &str,
) -> Result<String, Failure> {
    if status != "Active" && status != "Inactive" {
        return Err((
            400,
            "ValidationError",
            format!("Status must be Active or Inactive, not {status:?}"),
        ));
    }
    let changed = Connection::open(&s.inventory)
        .and_then(|c| {
            c.execute(
                "update aws_iam_access_key set status = ?4
                 where account_id = ?1 and user_name = ?2 and access_key_id = ?3",
                params![account, user, key, status],
            )
        })
        .map_err(internal)?;
    if changed == 0 {
        return Err((
            404,
            "NoSuchEntity",
            format!("The Access Key with id {key} cannot be found."),
        ));
    }
    Ok(format!(
        "<UpdateAccessKeyResponse xmlns=\"{IAM_NS}\">\
         <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
         </UpdateAccessKeyResponse>"
    ))
}

/// (key id, status, created) of `user`'s keys in `account`.
fn read_keys(
    s: &Standin,
    account: &str,
    user: &str,
) -> rusqlite::Result<Vec<(String, String, String)>> {
    let c = Connection::open(&s.inventory)?;
    let mut st = c.prepare(
        "select access_key_id, status, create_date from aws_iam_access_key
         where account_id = ?1 and user_name = ?2 order by access_key_id",
    )?;
    st.query_map(params![account, user], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?
    .collect()
}

/// An RFC 3339 time as IAM writes it: UTC, whole seconds (`2024-01-02T03:04:05Z`).
fn iso_seconds(time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_else(|_| escape(time))
}

fn internal(e: rusqlite::Error) -> Failure {
    (500, "ServiceFailure", format!("demo inventory: {e}"))
}

fn error(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{IAM_NS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        escape(message)
    )
}

/// `s` fit for XML text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
