//! Slack's Socket Mode as the stand-in speaks it (Slack's documented protocol): a WebSocket
//! server whose URLs `apps.connections.open` hands out, one single-use ticket each; a `hello`
//! on connecting; envelopes (`interactive`, `slash_commands`, `events_api`) with an
//! `envelope_id`, `accepts_response_payload`, `retry_attempt` and `retry_reason`; and
//! `disconnect` (`refresh_requested`, `warning`). Like Slack, it delivers an envelope again
//! (`retry_attempt` + 1, `retry_reason: "timeout"`) when no acknowledgement came within 3 s,
//! and records that as late: a test asserts there was none.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// How long Slack waits for an acknowledgement before delivering again.
pub const ACK_WINDOW: Duration = Duration::from_secs(3);

/// One delivery of an envelope.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The envelope as sent.
    pub envelope: Value,
    /// Over which connection (index into `connections`).
    pub connection: usize,
    /// When.
    pub at: Instant,
}

/// An acknowledgement vigilo sent.
#[derive(Debug, Clone)]
pub struct Ack {
    /// Its `envelope_id`.
    pub envelope_id: String,
    /// Its `payload`, if any.
    pub payload: Option<Value>,
    /// Over which connection.
    pub connection: usize,
    /// When.
    pub at: Instant,
}

enum Command {
    Send(Value),
    Disconnect(String),
    Drop,
}

/// What the Socket Mode side holds.
#[derive(Default)]
pub struct State {
    /// The WebSocket port.
    pub port: u16,
    tickets: u64,
    open_tickets: Vec<String>,
    /// Each accepted connection's ticket, in order.
    pub connections: Vec<String>,
    /// Connections refused (a ticket used twice or never issued).
    pub refused: usize,
    current: Option<(usize, mpsc::UnboundedSender<Command>)>,
    next_envelope: u64,
    /// Every delivery, in order.
    pub deliveries: Vec<Delivery>,
    /// Every acknowledgement, in order.
    pub acks: Vec<Ack>,
    /// Envelopes delivered again because no acknowledgement came in time.
    pub late: Vec<String>,
    handle: Option<tokio::runtime::Handle>,
}

impl State {
    /// A new single-use URL for `apps.connections.open`.
    pub fn issue_url(&mut self) -> String {
        self.tickets += 1;
        let ticket = format!("ticket-{}", self.tickets);
        self.open_tickets.push(ticket.clone());
        format!("ws://127.0.0.1:{}/link/?ticket={ticket}", self.port)
    }

    /// Whether a connection is up.
    pub fn connected(&self) -> bool {
        self.current.is_some()
    }

    /// Delivers `envelope` over the current connection; false when there is none.
    fn deliver(&mut self, envelope: Value) -> bool {
        let Some((connection, tx)) = &self.current else {
            return false;
        };
        let connection = *connection;
        if tx.send(Command::Send(envelope.clone())).is_err() {
            return false;
        }
        self.deliveries.push(Delivery {
            envelope,
            connection,
            at: Instant::now(),
        });
        true
    }

    /// A new envelope of `kind` with `payload`; returns its id.
    pub fn envelope(&mut self, kind: &str, payload: Value) -> Option<String> {
        self.next_envelope += 1;
        let id = format!("envelope-{:04}", self.next_envelope);
        let envelope = json!({
            "envelope_id": id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        });
        self.deliver(envelope).then_some(id)
    }

    /// Delivers envelope `id` again, as Slack does when it saw no acknowledgement.
    pub fn redeliver(&mut self, id: &str) -> bool {
        let Some(last) = self
            .deliveries
            .iter()
            .rev()
            .find(|d| d.envelope["envelope_id"] == id)
        else {
            return false;
        };
        let mut envelope = last.envelope.clone();
        envelope["retry_attempt"] = json!(envelope["retry_attempt"].as_u64().unwrap_or(0) + 1);
        envelope["retry_reason"] = json!("timeout");
        self.deliver(envelope)
    }

    /// Sends `disconnect` with `reason` over the current connection.
    pub fn disconnect(&mut self, reason: &str) -> bool {
        self.current
            .as_ref()
            .is_some_and(|(_, tx)| tx.send(Command::Disconnect(reason.to_string())).is_ok())
    }

    /// Drops the current connection without a close frame (a network failure).
    pub fn drop_connection(&mut self) -> bool {
        let dropped = self
            .current
            .as_ref()
            .is_some_and(|(_, tx)| tx.send(Command::Drop).is_ok());
        self.current = None;
        dropped
    }

    /// Whether delivery `d` (by position) was acknowledged.
    pub fn acked(&self, d: &Delivery) -> bool {
        self.acks
            .iter()
            .any(|a| a.envelope_id == d.envelope["envelope_id"] && a.at >= d.at)
    }
}

/// Binds the WebSocket port; [`serve`] takes the listener on the stand-in's runtime.
pub fn bind(state: &Arc<Mutex<State>>) -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    state.lock().unwrap().port = listener.local_addr().unwrap().port();
    listener
}

/// Accepts Socket Mode connections until the runtime ends.
pub async fn serve(listener: std::net::TcpListener, state: Arc<Mutex<State>>) {
    state.lock().unwrap().handle = Some(tokio::runtime::Handle::current());
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(connection(tcp, Arc::clone(&state)));
    }
}

#[allow(clippy::result_large_err)]
async fn connection(tcp: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let uri = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&uri);
    let callback = move |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                         response| {
        *seen.lock().unwrap() = request.uri().to_string();
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let uri = uri.lock().unwrap().clone();
    let ticket = uri.split("ticket=").nth(1).unwrap_or_default().to_string();
    let (index, mut rx) = {
        let mut s = state.lock().unwrap();
        let Some(pos) = s.open_tickets.iter().position(|t| *t == ticket) else {
            s.refused += 1;
            return;
        };
        s.open_tickets.remove(pos);
        let (tx, rx) = mpsc::unbounded_channel();
        let index = s.connections.len();
        s.connections.push(ticket);
        s.current = Some((index, tx));
        (index, rx)
    };
    let hello = json!({
        "type": "hello",
        "num_connections": 1,
        "debug_info": {"host": "standin", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A0VIGILO"},
    });
    if ws
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Send(envelope)) => {
                    let id = envelope["envelope_id"].as_str().unwrap_or_default().to_string();
                    if ws.send(Message::Text(envelope.to_string().into())).await.is_err() {
                        break;
                    }
                    watch(&state, id, Instant::now());
                }
                Some(Command::Disconnect(reason)) => {
                    let message = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "standin"}});
                    // Slack keeps the old connection open a while; the client moves on.
                    let _ = ws.send(Message::Text(message.to_string().into())).await;
                }
                Some(Command::Drop) | None => return,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let ack: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let envelope_id = ack["envelope_id"].as_str().unwrap_or_default().to_string();
                    state.lock().unwrap().acks.push(Ack {
                        envelope_id,
                        payload: ack.get("payload").cloned(),
                        connection: index,
                        at: Instant::now(),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    let mut s = state.lock().unwrap();
    if s.current.as_ref().is_some_and(|(i, _)| *i == index) {
        s.current = None;
    }
}

/// Delivers envelope `id` again if no acknowledgement for it comes within [`ACK_WINDOW`].
fn watch(state: &Arc<Mutex<State>>, id: String, sent: Instant) {
    let Some(handle) = state.lock().unwrap().handle.clone() else {
        return;
    };
    let state = Arc::clone(state);
    handle.spawn(async move {
        tokio::time::sleep(ACK_WINDOW).await;
        let mut s = state.lock().unwrap();
        let acked = s.acks.iter().any(|a| a.envelope_id == id && a.at >= sent);
        if !acked {
            s.late.push(id.clone());
            s.redeliver(&id);
        }
    });
}
