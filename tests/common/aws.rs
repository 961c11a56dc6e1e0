//! AWS for the tests: `moto_server` (PyPI `moto[server]`, from the test venv) on a free
//! loopback port as the real IAM and STS query APIs, and a recording proxy in front of it
//! that counts the calls vigilo makes (by `Action`), keeps what moto answered, and can
//! answer a call with an AWS error instead (throttling, 5xx, AccessDenied). An injected
//! error's message echoes the request's session token, as a careless intermediary might,
//! so the tests can check that such text is masked.
//!
//! One moto server holds many accounts: credentials from `AssumeRole` into
//! `arn:aws:iam::ACCOUNT:role/…` act in ACCOUNT (moto's multi-account support; the role
//! need not exist). Plain credentials act in moto's default account 123456789012.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};

/// moto's default account (plain credentials).
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// A moto server, killed when dropped.
pub struct Moto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if !bin.exists() {
        panic!(
            "the AWS tests need moto_server in {}: run scripts/test, which installs the Python test tools (moto[server])",
            bin.display()
        );
    }
    bin
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("moto.log");
        let port = super::free_port();
        let mut child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("MOTO_ACCOUNT_ID")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the moto log"))
            .spawn()
            .expect("start moto_server");
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("moto_server exited ({status}) before it listened on {port}:\n{err}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on 127.0.0.1:{port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            port,
            child,
            _dir: dir,
        }
    }

    /// Its endpoint URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An IAM client for seeding and checking `account` (None: moto's default account),
    /// talking to moto directly (not through any proxy).
    pub async fn iam(&self, account: Option<&str>) -> aws_sdk_iam::Client {
        let mut credentials =
            Credentials::new("AKIASEEDSEEDSEED0000", "seed-secret", None, None, "test");
        if let Some(account) = account {
            let sts = aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .http_client(vigilo::aws::https_client())
                    .region(Region::new("us-east-1"))
                    .endpoint_url(self.url())
                    .credentials_provider(credentials.clone())
                    .build(),
            );
            let out = sts
                .assume_role()
                .role_arn(format!("arn:aws:iam::{account}:role/test-seed"))
                .role_session_name("test-seed")
                .send()
                .await
                .expect("moto AssumeRole for seeding");
            let c = out.credentials().expect("credentials");
            credentials = Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                None,
                "test",
            );
        }
        aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .http_client(vigilo::aws::https_client())
                .region(Region::new("us-east-1"))
                .endpoint_url(self.url())
                .credentials_provider(credentials)
                .build(),
        )
    }
}

/// Creates `user` (if needed) with a new access key in the account `iam` acts in; returns the key id.
pub async fn create_key(iam: &aws_sdk_iam::Client, user: &str) -> String {
    let exists = iam.get_user().user_name(user).send().await.is_ok();
    if !exists {
        iam.create_user()
            .user_name(user)
            .send()
            .await
            .expect("CreateUser");
    }
    let out = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .expect("CreateAccessKey");
    out.access_key()
        .expect("access key")
        .access_key_id()
        .to_string()
}

/// The status of a key (`Active` / `Inactive`), or None when it or its user is gone.
pub async fn key_status(iam: &aws_sdk_iam::Client, user: &str, key: &str) -> Option<String> {
    let out = iam.list_access_keys().user_name(user).send().await.ok()?;
    out.access_key_metadata()
        .iter()
        .find(|k| k.access_key_id() == Some(key))
        .and_then(|k| k.status())
        .map(|s| s.as_str().to_string())
}

/// Sets a key's status directly in moto.
pub async fn set_status(iam: &aws_sdk_iam::Client, user: &str, key: &str, status: &str) {
    iam.update_access_key()
        .user_name(user)
        .access_key_id(key)
        .status(status.into())
        .send()
        .await
        .expect("UpdateAccessKey (test setup)");
}

/// One call the proxy saw.
#[derive(Debug, Clone)]
pub struct Call {
    /// The query API's `Action` (e.g. `UpdateAccessKey`).
    pub action: String,
    /// Its form parameters.
    pub params: BTreeMap<String, String>,
    /// The access key id that signed it.
    pub akid: String,
    /// The region its SigV4 credential scope names (`Credential=AKID/DATE/REGION/SERVICE/…`).
    pub region: String,
    /// The status returned.
    pub status: u16,
    /// The body returned.
    pub response: String,
    /// The request's path and query (S3's bucket is in the path).
    pub path: String,
}

impl Call {
    /// Whether the call names `target` (a bucket, group, instance or user) in its parameters or path.
    pub fn names(&self, target: &str) -> bool {
        self.params.values().any(|v| v == target)
            || self.path.split(['/', '?']).any(|segment| segment == target)
            || self.params.get("body").is_some_and(|b| b.contains(target))
    }
}

/// An error the proxy answers for the next `times` calls of `action`: instead of forwarding,
/// or (`after_forwarding`) after moto has carried the call out, as when an answer is lost.
#[derive(Debug, Clone)]
pub struct Fault {
    pub action: String,
    pub status: u16,
    pub code: String,
    pub times: usize,
    pub after_forwarding: bool,
    /// The error's message; `None`: one naming the proxy and echoing the session token.
    pub message: Option<String>,
}

/// A recording, fault-injecting HTTP proxy in front of one moto server.
pub struct Proxy {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl Proxy {
    /// Starts on a free port, forwarding to `upstream` (a moto URL).
    pub fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let faults: Arc<Mutex<Vec<Fault>>> = Arc::default();
        let state = ProxyState {
            upstream: upstream.to_string(),
            http: reqwest::Client::new(),
            calls: Arc::clone(&calls),
            faults: Arc::clone(&faults),
        };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new()
                    .fallback(forward)
                    .with_state(Arc::new(state));
                let _ = axum::serve(listener, app).await;
            });
        });
        Proxy {
            port,
            calls,
            faults,
        }
    }

    /// Its URL (what vigilo's `endpoint_url` points at).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls of one action.
    pub fn calls_of(&self, action: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .collect()
    }

    /// Forgets the calls so far.
    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// Answers the next `times` calls of `action` with an AWS error (moto never sees them).
    pub fn fail(&self, action: &str, status: u16, code: &str, times: usize) {
        self.push(action, status, code, times, false);
    }

    /// Forwards the next call of `action` to moto, which carries it out, then answers it with an
    /// AWS error instead of moto's answer.
    pub fn fail_after_forwarding(&self, action: &str, status: u16, code: &str) {
        self.push(action, status, code, 1, true);
    }

    /// Answers the next call of `action` with 403 AccessDenied and AWS's `message`.
    pub fn deny(&self, action: &str, message: &str) {
        self.faults.lock().unwrap().push(Fault {
            action: action.into(),
            status: 403,
            code: "AccessDenied".into(),
            times: 1,
            after_forwarding: false,
            message: Some(message.into()),
        });
    }

    fn push(&self, action: &str, status: u16, code: &str, times: usize, after_forwarding: bool) {
        self.faults.lock().unwrap().push(Fault {
            action: action.into(),
            status,
            code: code.into(),
            times,
            after_forwarding,
            message: None,
        });
    }

    /// Every secret moto handed out through this proxy (AssumeRole's SecretAccessKey and SessionToken).
    pub fn issued_secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in self.calls_of("AssumeRole") {
            for tag in ["SecretAccessKey", "SessionToken"] {
                if let Some(v) = between(&c.response, &format!("<{tag}>"), &format!("</{tag}>")) {
                    out.push(v.to_string());
                }
            }
        }
        out
    }
}

/// The text between `start` and `end` in `s`.
pub fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)? + from;
    Some(&s[from..to])
}

struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
}

async fn forward(
    axum::extract::State(state): axum::extract::State<Arc<ProxyState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 10 << 20)
        .await
        .unwrap_or_default();
    let params: BTreeMap<String, String> =
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .unwrap_or_default()
            .into_iter()
            .collect();
    let mut params = params;
    let action = match params.get("Action") {
        Some(a) => a.clone(),
        None => {
            // S3's REST calls name their operation by method and subresource.
            params.insert("body".into(), String::from_utf8_lossy(&body).into_owned());
            rest_operation(parts.method.as_str(), parts.uri.query().unwrap_or_default())
        }
    };
    let scope: Vec<String> = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| between(a, "Credential=", ","))
        .unwrap_or_default()
        .split('/')
        .map(String::from)
        .collect();
    let akid = scope.first().cloned().unwrap_or_default();
    let region = scope.get(2).cloned().unwrap_or_default();
    let fault = {
        let mut faults = state.faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|f| f.action == action && f.times > 0)
            .map(|f| {
                f.times -= 1;
                f.clone()
            })
    };
    let injected = |f: &Fault| {
        let kind = if f.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        let token = parts
            .headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        let message = f.message.clone().unwrap_or_else(|| {
            format!(
                "injected by the test proxy: {} (session token {token})",
                f.code
            )
        });
        let xml = format!(
            "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{message}</Message></Error><RequestId>proxy-fault</RequestId></ErrorResponse>",
            f.code
        );
        (f.status, "text/xml".to_string(), xml)
    };
    let (status, content_type, response) = match fault {
        Some(f) if !f.after_forwarding => injected(&f),
        fault => {
            let mut req = state.http.request(
                parts.method.clone(),
                format!("{}{}", state.upstream, parts.uri),
            );
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    req = req.header(name, value);
                }
            }
            let answer = match req.body(body.to_vec()).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let ct = r
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("text/xml")
                        .to_string();
                    (status, ct, r.text().await.unwrap_or_default())
                }
                Err(e) => (502, "text/plain".into(), format!("proxy: {e}")),
            };
            match fault {
                Some(f) => injected(&f),
                None => answer,
            }
        }
    };
    state.calls.lock().unwrap().push(Call {
        action,
        params,
        akid,
        region,
        status,
        response: response.clone(),
        path: parts.uri.to_string(),
    });
    (
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
        [("content-type", content_type)],
        response,
    )
        .into_response()
}

/// The name of an S3 REST operation on a bucket subresource, as AWS names it.
fn rest_operation(method: &str, query: &str) -> String {
    let sub = query.split(['&', '=']).next().unwrap_or_default();
    let name = match (method, sub) {
        ("GET", "versioning") => "GetBucketVersioning",
        ("PUT", "versioning") => "PutBucketVersioning",
        ("GET", "publicAccessBlock") => "GetPublicAccessBlock",
        ("PUT", "publicAccessBlock") => "PutPublicAccessBlock",
        ("DELETE", "publicAccessBlock") => "DeletePublicAccessBlock",
        ("GET", "tagging") => "GetBucketTagging",
        ("PUT", "tagging") => "PutBucketTagging",
        ("DELETE", "tagging") => "DeleteBucketTagging",
        _ => return format!("{method} ?{sub}"),
    };
    name.to_string()
}

/// Runs Python with boto3 (from the test venv) against moto at `url`, in `account` (None:
/// moto's default account): `code` sees clients `iam`, `ec2`, `s3` and sets `out`, which comes
/// back as JSON. An independent AWS client for seeding and checking what vigilo did.
pub fn boto(url: &str, account: Option<&str>, code: &str) -> serde_json::Value {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "the AWS tests need boto3 in {}: run scripts/test, which installs the Python test tools (moto[server])",
        python.display()
    );
    let script = format!(
        "import boto3, json, sys\n\
url, account = sys.argv[1], sys.argv[2]\n\
kw = dict(endpoint_url=url, region_name='us-east-1', aws_access_key_id='AKIASEEDSEEDSEED0000', aws_secret_access_key='seed-secret')\n\
if account:\n    c = boto3.client('sts', **kw).assume_role(RoleArn=f'arn:aws:iam::{{account}}:role/test-seed', RoleSessionName='test-seed')['Credentials']\n    kw.update(aws_access_key_id=c['AccessKeyId'], aws_secret_access_key=c['SecretAccessKey'], aws_session_token=c['SessionToken'])\n\
iam, ec2, s3 = boto3.client('iam', **kw), boto3.client('ec2', **kw), boto3.client('s3', **kw)\n\
out = None\n{code}\nprint(json.dumps(out, default=str))\n"
    );
    let output = Command::new(python)
        .args(["-c", &script, url, account.unwrap_or("")])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "boto3 failed:\n{code}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("boto3 printed JSON")
}
