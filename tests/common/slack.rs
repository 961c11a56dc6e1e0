//! A Slack Web API stand-in on a loopback port, speaking Slack's documented requests and
//! answers: `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `conversations.history`
//! and `.replies` (with message metadata), `users.lookupByEmail`, `auth.test`,
//! `apps.connections.open` (JSON or form bodies, the bearer token of the kind each method
//! takes), `{"ok":true,…}` or `{"ok":false,"error":…}` (HTTP 200), and HTTP 429 with
//! `Retry-After` when told to or when a channel is posted to faster than its limit.
//! `views.open` exchanges a trigger id the stand-in minted for a click ([`Slack::trigger_id`]):
//! once, within three seconds, or `invalid_trigger_id` / `exchanged_trigger_id` /
//! `expired_trigger_id`, as Slack answers; a view that breaks Slack's modal limits is
//! `invalid_arguments`. It records every request, and also takes `response_url` posts
//! (`/response/ID`); its Socket Mode side is `slack_socket`. Runs on its own thread and
//! runtime, so tests may block while vigilo calls it.

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
    /// Every message posted, oldest first, as `conversations.history` shows it.
    posts: Vec<Value>,
    /// Hold the answer to the next accepted `chat.postMessage`.
    hold: bool,
    /// An answer is being held.
    held: bool,
}

impl Inner {
    /// A new message `ts`, as Slack makes them: the time it took the message (seconds and
    /// microseconds), unique within the workspace.
    fn new_ts(&mut self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        self.next_ts = now.max(self.next_ts + 100);
        format!(
            "{}.{:06}",
            self.next_ts / 1_000_000,
            self.next_ts % 1_000_000
        )
    }
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
            scopes: bot_scopes().into_iter().map(str::to_string).collect(),
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

    /// Takes the next `chat.postMessage` (it is posted) but never answers it.
    pub fn hold_next_post(&self) {
        self.inner.lock().unwrap().hold = true;
    }

    /// Waits until a post is held (taken, not answered).
    pub fn wait_held(&self) {
        let start = Instant::now();
        while !self.inner.lock().unwrap().held {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Slack stand-in: no post to hold"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every message posted (`channel`, `ts`, `text`, `thread_ts`, `metadata`), oldest first.
    pub fn posts(&self) -> Vec<Value> {
        self.inner.lock().unwrap().posts.clone()
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

/// The Web API methods the stand-in answers, with the scopes Slack's reference requires of a
/// bot token for each (`apps.connections.open` takes an app-level token with
/// `connections:write` instead). A method not listed is `unknown_method`.
pub const METHOD_SCOPES: &[(&str, &[&str])] = &[
    ("chat.postMessage", &["chat:write"]),
    ("chat.update", &["chat:write"]),
    ("chat.postEphemeral", &["chat:write"]),
    // Public channels, and private ones the bot is in.
    (
        "conversations.history",
        &["channels:history", "groups:history"],
    ),
    (
        "conversations.replies",
        &["channels:history", "groups:history"],
    ),
    // Slack grants users:read.email only together with users:read.
    ("users.lookupByEmail", &["users:read", "users:read.email"]),
    ("views.open", &[]),
    ("auth.test", &[]),
    ("apps.connections.open", &[]),
];

/// Every bot scope of [`METHOD_SCOPES`], and `commands` for a slash command.
pub fn bot_scopes() -> std::collections::BTreeSet<&'static str> {
    METHOD_SCOPES
        .iter()
        .flat_map(|(_, scopes)| scopes.iter().copied())
        .chain(["commands"])
        .collect()
}

/// Slack's methods that take the app-level token; every other one takes the bot token.
const APP_TOKEN_METHODS: &[&str] = &["apps.connections.open"];

/// The chat methods (the ones that scripted faults apply to).
const CHAT_METHODS: &[&str] = &["chat.postMessage", "chat.update", "chat.postEphemeral"];

/// The methods that name a channel that must exist.
const CHANNEL_METHODS: &[&str] = &[
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "conversations.history",
    "conversations.replies",
];

/// A Slack `ts` as a number, for comparisons.
fn ts_value(ts: &str) -> f64 {
    ts.parse().unwrap_or(0.0)
}

/// `conversations.history` / `.replies` as Slack documents them: the channel's top-level
/// messages newest first (or a thread's, oldest first), within `oldest`..`latest` (inclusive
/// only with `inclusive`), `metadata` only with `include_all_metadata`, `limit` a page
/// (default 100), `cursor` from `response_metadata.next_cursor`.
fn history(posts: &[Value], body: &Value, thread: Option<&str>) -> Value {
    let arg = |k: &str| body[k].as_str().unwrap_or_default();
    let inclusive = arg("inclusive") == "true" || arg("inclusive") == "1";
    let oldest = (!arg("oldest").is_empty()).then(|| ts_value(arg("oldest")));
    let latest = (!arg("latest").is_empty()).then(|| ts_value(arg("latest")));
    let in_range = |ts: f64| {
        oldest.is_none_or(|o| if inclusive { ts >= o } else { ts > o })
            && latest.is_none_or(|l| if inclusive { ts <= l } else { ts < l })
    };
    let mut messages: Vec<Value> = posts
        .iter()
        .filter(|p| p["channel"] == body["channel"])
        .filter(|p| match thread {
            Some(t) => p["ts"] == t || p["thread_ts"] == t,
            None => p.get("thread_ts").is_none(),
        })
        .filter(|p| in_range(ts_value(p["ts"].as_str().unwrap_or_default())))
        .map(|p| {
            let mut m = json!({"type": "message", "subtype": "bot_message", "bot_id": "B0VIGILO",
                               "app_id": "A0VIGILO", "text": p["text"], "ts": p["ts"]});
            if let Some(t) = p.get("thread_ts") {
                m["thread_ts"] = t.clone();
            }
            if arg("include_all_metadata") == "true" && p.get("metadata").is_some() {
                m["metadata"] = p["metadata"].clone();
            }
            m
        })
        .collect();
    if thread.is_none() {
        messages.reverse();
    }
    let limit = arg("limit").parse::<usize>().unwrap_or(100).clamp(1, 1000);
    let start = arg("cursor")
        .strip_prefix("offset:")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    let page: Vec<Value> = messages.iter().skip(start).take(limit).cloned().collect();
    let more = start + page.len() < messages.len();
    let next = if more {
        format!("offset:{}", start + page.len())
    } else {
        String::new()
    };
    json!({"ok": true, "messages": page, "has_more": more,
           "response_metadata": {"next_cursor": next}})
}

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
    let (response, holding) = respond(&state, method, &headers, &body);
    if holding {
        // Slack took the post; its answer never leaves (the test kills vigilo meanwhile).
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    response
}

/// Slack's answer to a call of `method`, and whether to hold it.
fn respond(
    state: &Mutex<Inner>,
    method: String,
    headers: &HeaderMap,
    body: &[u8],
) -> (Response, bool) {
    let body = parse_body(headers, body);
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
    let mut holding = false;
    let (status, reply, retry) = if !METHOD_SCOPES.iter().any(|(m, _)| *m == method) {
        (
            StatusCode::OK,
            json!({"ok": false, "error": "unknown_method"}),
            None,
        )
    } else if auth.is_empty() {
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
    } else if CHANNEL_METHODS.contains(&method.as_str()) && !s.channels.contains(&channel) {
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
                let ts = s.new_ts();
                let mut post = json!({"channel": channel, "ts": ts, "text": body["text"]});
                if let Some(thread) = body.get("thread_ts") {
                    post["thread_ts"] = thread.clone();
                }
                if let Some(metadata) = body.get("metadata") {
                    post["metadata"] = metadata.clone();
                }
                s.posts.push(post);
                if s.hold {
                    s.hold = false;
                    s.held = true;
                    holding = true;
                }
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
                let ts = s.new_ts();
                (StatusCode::OK, json!({"ok": true, "message_ts": ts}), None)
            }
            "conversations.history" => (StatusCode::OK, history(&s.posts, &body, None), None),
            "conversations.replies" => match body["ts"].as_str() {
                Some(ts)
                    if s.posts
                        .iter()
                        .any(|p| p["ts"] == ts && p["channel"] == body["channel"]) =>
                {
                    (StatusCode::OK, history(&s.posts, &body, Some(ts)), None)
                }
                _ => (
                    StatusCode::OK,
                    json!({"ok": false, "error": "thread_not_found"}),
                    None,
                ),
            },
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
    (r, holding)
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

/// A project of `config` and remediation `deactivate` whose query `keys` (SQLite `src.db`)
/// finds `keys` stale access keys, `AKIA0001` of `user1` and on.
pub fn stale_keys_project(config: &str, remediation: &str, keys: usize) -> tempfile::TempDir {
    let dir = super::project(&[
        ("config/vigilo.toml", config),
        (
            "queries/keys.sql",
            "-- title: Stale keys\n-- primary_key: id\n-- remediation: deactivate\nselect id, owner from keys order by id\n",
        ),
        ("remediations/deactivate.toml", remediation),
    ]);
    let db = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    db.execute_batch("create table keys (id text, owner text)")
        .unwrap();
    for i in 1..=keys {
        db.execute(
            "insert into keys values (?1, ?2)",
            [format!("AKIA{i:04}"), format!("user{i}")],
        )
        .unwrap();
    }
    dir
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
