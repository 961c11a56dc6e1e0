//! A tiny HTTP/1.1 server on a loopback port that records every request (method, path,
//! Idempotency-Key, body) and answers as told: the target of `http` actions and webhooks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the recording server answers.
#[derive(Clone, Copy, PartialEq)]
pub enum Answer {
    Ok,
    Fail,
    /// 500, with the request's path (query string and all) in the body.
    FailEcho,
    /// Read the request, then never answer.
    Hang,
}

/// One request the server received: (method, path, Idempotency-Key, body).
pub type Seen = (String, String, String, String);

/// A tiny HTTP/1.1 server on a free loopback port that records every request.
pub struct Recorder {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Recorder {
    /// Starts on a free port.
    pub fn start() -> Recorder {
        Recorder::start_on(0)
    }

    /// Starts on `port` (0: a free one).
    pub fn start_on(port: u16) -> Recorder {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answer = Arc::new(Mutex::new(Answer::Ok));
        let (s, a) = (Arc::clone(&seen), Arc::clone(&answer));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, a) = (Arc::clone(&s), Arc::clone(&a));
                std::thread::spawn(move || {
                    let _ = handle(stream, &s, &a);
                });
            }
        });
        Recorder { port, seen, answer }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Sets how later requests are answered.
    pub fn answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }
}

fn handle(
    stream: std::net::TcpStream,
    seen: &Mutex<Vec<Seen>>,
    answer: &Mutex<Answer>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut length, mut key) = (0usize, String::new());
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "idempotency-key" => key = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    seen.lock().unwrap().push((
        method,
        path.clone(),
        key,
        String::from_utf8_lossy(&body).into_owned(),
    ));
    let a = *answer.lock().unwrap();
    let mut stream = stream;
    match a {
        Answer::Hang => {
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        }
        Answer::Ok => stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\ndone:ok"),
        Answer::Fail => stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom"),
        Answer::FailEcho => {
            let body = format!("no such path {path}");
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(format!("{head}{body}").as_bytes())
        }
    }
}
