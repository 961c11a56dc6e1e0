//! A Slack Web API stand-in on a loopback port, speaking Slack's documented requests and
//! answers: `chat.postMessage`, `chat.update`, `chat.postEphemeral` (JSON bodies, bearer bot
//! token), `{"ok":true,"channel":…,"ts":…}` or `{"ok":false,"error":…}` (HTTP 200), and HTTP
//! 429 with `Retry-After` when told to or when a channel is posted to faster than its limit.
//! `views.open` exchanges a trigger id the stand-in minted for a click ([`Slack::trigger_id`]):
//! once, within three seconds, or `invalid_trigger_id` / `exchanged_trigger_id` /
//! `expired_trigger_id`, as Slack answers; a view that breaks Slack's modal limits is
//! `invalid_arguments`.
//! It records every request, and also takes `response_url` posts (`/response/ID`).
//! Runs on its own thread and runtime, so tests may block while vigilo calls it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::slack_socket as socket;

/// The bot token the stand-in accepts.
pub const BOT_TOKEN: &str = "xoxb-test-bot-token-0001";

/// The app-level token the stand-in accepts (Socket Mode).
pub const APP_TOKEN: &str = "xapp-1-test-app-token-0001";

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `chat.postMessage`, …, or `response/ID`.
    pub method: String,
    /// The JSON body.
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
    /// What the stand-in answered: HTTP status and Slack's `ok`.
    pub answered: (u16, bool),
    /// The answer's JSON.
    pub reply: Value,
}

/// A scripted answer for the next call of any chat method.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 429 with `Retry-After: SECS`.
    RateLimited(u64),
    /// HTTP 500.
    ServerError,
    /// `{"ok": false, "error": CODE}`.
    Error(&'static str),
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    faults: VecDeque<Fault>,
    channels: Vec<String>,
    last_post: HashMap<String, Instant>,
    min_interval: Option<Duration>,
    next_ts: u64,
    /// Trigger ids minted for clicks: when, and whether already exchanged.
    triggers: HashMap<String, (Instant, bool)>,
    /// Views opened so far (their ids count up).
    views: u64,
    /// The bot token's scopes, as `auth.test` shows them.
    scopes: Vec<String>,
    /// Email → user id, for `users.lookupByEmail`.
    users: HashMap<String, String>,
    /// Socket Mode.
    socket: Arc<Mutex<socket::State>>,
}

/// The stand-in.
#[derive(Clone)]
pub struct Slack {
    /// Its port.
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
    sockets: Arc<Mutex<socket::State>>,
}

impl Slack {
    /// Starts on a free port; `channels` exist, others are `channel_not_found`.
    pub fn start(channels: &[&str]) -> Slack {
        let inner = Arc::new(Mutex::new(Inner {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            next_ts: 1_700_000_000_000_100,
            ..Inner::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let sockets = Arc::clone(&inner.lock().unwrap().socket);
        let ws_listener = socket::bind(&sockets);
        let state = Arc::clone(&inner);
        let serving = Arc::clone(&sockets);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::spawn(socket::serve(ws_listener, serving));
                let app = axum::Router::new()
                    .route("/api/{method}", post(api))
                    .route("/response/{id}", post(response_url))
                    .with_state(state);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Slack {
            port,
            inner,
            sockets,
        }
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    /// A `response_url` for slash commands.
    pub fn response_url(&self, id: &str) -> String {
        format!("http://127.0.0.1:{}/response/{id}", self.port)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// The calls of `method` that Slack accepted (`ok: true`).
    pub fn accepted(&self, method: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.answered == (200, true))
            .map(|c| c.body)
            .collect()
    }

    /// Answers the next chat calls with these faults, in order.
    pub fn fail_next(&self, faults: &[Fault]) {
        self.inner
            .lock()
            .unwrap()
            .faults
            .extend(faults.iter().cloned());
    }

    /// Answers 429 (`Retry-After: 1`) to a post that comes sooner than `gap` after the last one
    /// to the same channel, as Slack does to bursts.
    pub fn limit_channels(&self, gap: Duration) {
        self.inner.lock().unwrap().min_interval = Some(gap);
    }

    /// A fresh `trigger_id` for a click payload, good for one `views.open` within three seconds.
    pub fn trigger_id(&self) -> String {
        let mut s = self.inner.lock().unwrap();
        let n = s.triggers.len() + 1;
        let id = format!("{n}.98765.abcd{n:08x}");
        s.triggers.insert(id.clone(), (Instant::now(), false));
        id
    }

    /// Makes trigger `id` as old as Slack's three seconds (the next `views.open` is
    /// `expired_trigger_id`).
    pub fn expire_trigger(&self, id: &str) {
        let mut s = self.inner.lock().unwrap();
        if let Some((minted, _)) = s.triggers.get_mut(id) {
            *minted = Instant::now() - TRIGGER_TTL - Duration::from_millis(1);
        }
    }

    /// Sets the bot token's scopes that `auth.test` shows.
    pub fn grant_scopes(&self, scopes: &[&str]) {
        self.inner.lock().unwrap().scopes = scopes.iter().map(|s| s.to_string()).collect();
    }

    /// Adds workspace members that `users.lookupByEmail` finds: `(email, user id)`.
    pub fn add_users(&self, users: &[(&str, &str)]) {
        let mut s = self.inner.lock().unwrap();
        for (email, id) in users {
            s.users.insert(email.to_string(), id.to_string());
        }
    }

    /// The Socket Mode side: its connections, deliveries and acknowledgements.
    pub fn socket(&self) -> std::sync::MutexGuard<'_, socket::State> {
        self.sockets.lock().unwrap()
    }

    /// Sends an envelope of `kind` with `payload` once a Socket Mode connection is up;
    /// returns its `envelope_id`.
    pub fn send_envelope(&self, kind: &str, payload: Value) -> String {
        let start = Instant::now();
        loop {
            if let Some(id) = self.socket().envelope(kind, payload.clone()) {
                return id;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Slack stand-in: no Socket Mode connection to send a {kind} envelope on"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `n` Socket Mode connections have been accepted, one of them up.
    pub fn wait_connections(&self, n: usize) {
        let start = Instant::now();
        while !(self.socket().connections.len() >= n && self.socket().connected()) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Slack stand-in: {} Socket Mode connection(s), not {n}",
                self.socket().connections.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `pred` holds for the calls, or panics after `limit`.
    pub fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&[Call]) -> bool) {
        let start = Instant::now();
        loop {
            if pred(&self.calls()) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "Slack stand-in: never saw {what}: {:#?}",
                self.calls()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn answer(status: StatusCode, body: Value, retry_after: Option<u64>) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    r
}

/// Slack's methods that take the app-level token; every other one takes the bot token.
const APP_TOKEN_METHODS: &[&str] = &["apps.connections.open"];

/// The chat methods (the ones that scripted faults and channel checks apply to).
const CHAT_METHODS: &[&str] = &["chat.postMessage", "chat.update", "chat.postEphemeral"];

/// A request body as Slack reads it: JSON, or form fields (as a JSON object of strings).
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    }
}

async fn api(
    State(state): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&headers, &body);
    let mut s = state.lock().unwrap();
    let now = Instant::now();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let channel = body["channel"].as_str().unwrap_or("").to_string();
    let chat = CHAT_METHODS.contains(&method.as_str());
    let wants_app = APP_TOKEN_METHODS.contains(&method.as_str());
    let (expected, other) = if wants_app {
        (APP_TOKEN, BOT_TOKEN)
    } else {
        (BOT_TOKEN, APP_TOKEN)
    };
    let mut extra_headers: Vec<(&str, String)> = Vec::new();
    let (status, reply, retry) = if auth.is_empty() {
        (
            StatusCode::OK,
            json!({"ok": false, "error": "not_authed"}),
            None,
        )
    } else if auth == format!("Bearer {other}") {
        (
            StatusCode::OK,
            json!({"ok": false, "error": "not_allowed_token_type"}),
            None,
        )
    } else if auth != format!("Bearer {expected}") {
        (
            StatusCode::OK,
            json!({"ok": false, "error": "invalid_auth"}),
            None,
        )
    } else if let Some(fault) = chat.then(|| s.faults.pop_front()).flatten() {
        match fault {
            Fault::RateLimited(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"ok": false, "error": "ratelimited"}),
                Some(secs),
            ),
            Fault::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"ok": false, "error": "internal_error"}),
                None,
            ),
            Fault::Error(code) => (StatusCode::OK, json!({"ok": false, "error": code}), None),
        }
    } else if method == "views.open" {
        views_open(&mut s, &body, now)
    } else if chat && !s.channels.contains(&channel) {
        (
            StatusCode::OK,
            json!({"ok": false, "error": "channel_not_found"}),
            None,
        )
    } else if method == "chat.postMessage"
        && s.min_interval.is_some_and(|gap| {
            s.last_post
                .get(&channel)
                .is_some_and(|last| now.duration_since(*last) < gap)
        })
    {
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"ok": false, "error": "ratelimited"}),
            Some(1),
        )
    } else {
        match method.as_str() {
            "chat.postMessage" => {
                s.last_post.insert(channel.clone(), now);
                s.next_ts += 100;
                let ts = format!("{}.{:06}", s.next_ts / 1_000_000, s.next_ts % 1_000_000);
                (
                    StatusCode::OK,
                    json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": body["text"], "ts": ts}}),
                    None,
                )
            }
            "chat.update" => (
                StatusCode::OK,
                json!({"ok": true, "channel": channel, "ts": body["ts"], "text": body["text"]}),
                None,
            ),
            "chat.postEphemeral" => {
                s.next_ts += 100;
                let ts = format!("{}.{:06}", s.next_ts / 1_000_000, s.next_ts % 1_000_000);
                (StatusCode::OK, json!({"ok": true, "message_ts": ts}), None)
            }
            "apps.connections.open" => {
                let url = s.socket.lock().unwrap().issue_url();
                (StatusCode::OK, json!({"ok": true, "url": url}), None)
            }
            "auth.test" => {
                extra_headers.push(("x-oauth-scopes", s.scopes.join(",")));
                (
                    StatusCode::OK,
                    json!({"ok": true, "url": "https://test.slack.com/", "team": "Test", "user": "vigilo",
                           "team_id": "T0TEAM", "user_id": "U0VIGILO", "bot_id": "B0VIGILO"}),
                    None,
                )
            }
            "users.lookupByEmail" => {
                let email = body["email"].as_str().unwrap_or_default().to_string();
                match s.users.get(&email) {
                    Some(id) => (
                        StatusCode::OK,
                        json!({"ok": true, "user": {"id": id, "team_id": "T0TEAM", "profile": {"email": email}}}),
                        None,
                    ),
                    None if email.is_empty() => (
                        StatusCode::OK,
                        json!({"ok": false, "error": "invalid_arguments"}),
                        None,
                    ),
                    None => (
                        StatusCode::OK,
                        json!({"ok": false, "error": "users_not_found"}),
                        None,
                    ),
                }
            }
            _ => (
                StatusCode::OK,
                json!({"ok": false, "error": "unknown_method"}),
                None,
            ),
        }
    };
    s.calls.push(Call {
        method: method.clone(),
        body,
        at: now,
        answered: (status.as_u16(), reply["ok"] == true),
        reply: reply.clone(),
    });
    let mut r = answer(status, reply, retry);
    for (name, value) in extra_headers {
        r.headers_mut().insert(name, value.parse().unwrap());
    }
    r
}

/// How long a trigger id may be exchanged after its click.
const TRIGGER_TTL: Duration = Duration::from_secs(3);

/// `views.open`: exchanges the trigger for the view, as Slack does, and echoes the view
/// with its id, state and hash.
fn views_open(s: &mut Inner, body: &Value, now: Instant) -> (StatusCode, Value, Option<u64>) {
    let refuse = |error: &str| (StatusCode::OK, json!({"ok": false, "error": error}), None);
    let trigger = body["trigger_id"].as_str().unwrap_or_default();
    match s.triggers.get_mut(trigger) {
        None => return refuse("invalid_trigger_id"),
        Some((_, true)) => return refuse("exchanged_trigger_id"),
        Some((minted, _)) if now.duration_since(*minted) > TRIGGER_TTL => {
            return refuse("expired_trigger_id");
        }
        Some((_, exchanged)) => *exchanged = true,
    }
    // Form bodies carry the view as a JSON string; JSON bodies as an object.
    let view = match &body["view"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let text_within = |v: &Value, max: usize| {
        v["type"] == "plain_text" && v["text"].as_str().is_some_and(|t| t.chars().count() <= max)
    };
    let problems: Vec<&str> = [
        (view["type"] != "modal", "view.type must be modal"),
        (
            !text_within(&view["title"], 24),
            "view.title: plain_text, at most 24 characters",
        ),
        (
            !view["submit"].is_null() && !text_within(&view["submit"], 24),
            "view.submit: plain_text, at most 24 characters",
        ),
        (
            view["blocks"].as_array().is_none_or(|b| b.len() > 100),
            "view.blocks: at most 100 blocks",
        ),
        (
            view["private_metadata"]
                .as_str()
                .is_some_and(|m| m.len() > 3000),
            "view.private_metadata: at most 3000 characters",
        ),
        (
            view["callback_id"].as_str().is_some_and(|c| c.len() > 255),
            "view.callback_id: at most 255 characters",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, why)| bad.then_some(why))
    .collect();
    if !problems.is_empty() {
        return (
            StatusCode::OK,
            json!({"ok": false, "error": "invalid_arguments", "response_metadata": {"messages": problems}}),
            None,
        );
    }
    s.views += 1;
    let id = format!("V0{:08}", s.views);
    let mut opened = view;
    for (key, value) in [
        ("id", json!(id)),
        ("team_id", json!("T0TEAM")),
        ("state", json!({"values": {}})),
        ("hash", json!(format!("1700000000.{:08}", s.views))),
        ("root_view_id", json!(id)),
        ("previous_view_id", Value::Null),
        ("app_id", json!("A0VIGILO")),
        ("bot_id", json!("B0VIGILO")),
        ("external_id", json!("")),
        ("clear_on_close", json!(false)),
        ("notify_on_close", json!(false)),
    ] {
        opened[key] = value;
    }
    for key in ["private_metadata", "callback_id"] {
        if opened[key].is_null() {
            opened[key] = json!("");
        }
    }
    (StatusCode::OK, json!({"ok": true, "view": opened}), None)
}

async fn response_url(
    State(state): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.lock().unwrap().calls.push(Call {
        method: format!("response/{id}"),
        body,
        at: Instant::now(),
        answered: (200, true),
        reply: Value::Null,
    });
    (StatusCode::OK, "ok").into_response()
}

/// The signature Slack's own SDK (`slack_sdk.signature.SignatureVerifier`) gives `body`.
pub fn sdk_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys; from slack_sdk.signature import SignatureVerifier; \
             print(SignatureVerifier(sys.argv[1]).generate_signature(timestamp=sys.argv[2], body=sys.argv[3]))",
            secret,
            &timestamp.to_string(),
            body,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("{}: {e}; run scripts/test, which installs the Python test tools (slack_sdk)", python.display())
        });
    assert!(
        out.status.success(),
        "slack_sdk failed (run scripts/test, which installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
