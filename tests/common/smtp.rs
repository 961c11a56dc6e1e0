//! A real SMTP server for the email tests: aiosmtpd (from the test venv, see
//! scripts/requirements-test.txt) on a free loopback port, run as its own process,
//! writing every accepted message (envelope, TLS, login and the raw data) to a
//! directory. Optionally it asks for a login and offers STARTTLS with a certificate
//! from a fresh test CA (`ca_file`). A RCPT address starting with `reject` gets a
//! permanent `550`. Killed when dropped.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server: the handler writes `NNNN.json` per message into `out`.
const SERVER: &str = r#"
import argparse, datetime, ipaddress, json, os, sys, threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--out", required=True)
p.add_argument("--auth")
p.add_argument("--starttls", metavar="DIR")
args = p.parse_args()


def certificates(d):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vigilo test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(d, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(d, "cert.pem"), "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(os.path.join(d, "key.pem"), "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


class Recorder:
    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        user = session.auth_data
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "user": user.decode() if isinstance(user, bytes) else user,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        path = os.path.join(args.out, "%04d.json" % n)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 queued as %04d" % n


kwargs = {}
if args.auth:
    user, password = args.auth.split(":", 1)

    def authenticator(server, session, envelope, mechanism, data):
        ok = data.login.decode() == user and data.password.decode() == password
        # handled=False: aiosmtpd answers a failure with its own 535.
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    kwargs.update(auth_required=True, auth_require_tls=False, authenticator=authenticator)
if args.starttls:
    import ssl

    certificates(args.starttls)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(args.starttls, "cert.pem"),
                        os.path.join(args.starttls, "key.pem"))
    kwargs.update(tls_context=ctx)

controller = Controller(Recorder(), hostname="127.0.0.1", port=args.port, **kwargs)
controller.start()
print("ready", flush=True)
# Ends when the test closes stdin (or dies): no server outlives its test.
sys.stdin.read()
controller.stop()
"#;

/// How the server is started.
#[derive(Default, Clone)]
pub struct Options {
    /// Require `AUTH` with this (user, password).
    pub auth: Option<(String, String)>,
    /// Offer STARTTLS with a certificate for 127.0.0.1 signed by a fresh CA (see [`Smtp::ca_file`]).
    pub starttls: bool,
}

/// A running aiosmtpd that records what it accepts.
pub struct Smtp {
    /// Its loopback port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

/// One accepted message, parsed.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender.
    pub mail_from: String,
    /// The envelope recipients.
    pub rcpt_tos: Vec<String>,
    /// Whether it came over TLS (STARTTLS).
    pub tls: bool,
    /// The login it was sent with.
    pub user: Option<String>,
    /// The `To:` addresses.
    pub to: Vec<String>,
    /// The decoded subject.
    pub subject: String,
    /// The text/plain part.
    pub text: String,
    /// The text/html part.
    pub html: String,
    /// The content type of the message itself (`multipart/alternative`).
    pub content_type: String,
    /// Every header, as (name, raw value), in order.
    pub headers: Vec<(String, String)>,
    /// The message as received.
    pub raw: String,
}

impl Received {
    /// The first header named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The `href`s of the HTML part, entities decoded, in order.
    pub fn html_links(&self) -> Vec<String> {
        self.html
            .split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(|h| {
                h.replace("&amp;", "&")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
            })
            .collect()
    }

    /// Every `http://` or `https://` URL in the text part, in order.
    pub fn text_links(&self) -> Vec<String> {
        self.text
            .split_whitespace()
            .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
            .map(str::to_string)
            .collect()
    }
}

fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = python.exists()
        && Command::new(&python)
            .args(["-c", "import aiosmtpd, cryptography"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        panic!(
            "the email tests need aiosmtpd in {}: run scripts/test, which installs the Python test tools",
            python.display()
        );
    }
    python
}

impl Smtp {
    /// A plain server (no STARTTLS, no login).
    pub fn start() -> Smtp {
        Smtp::start_with(&Options::default())
    }

    /// A server as `options` say.
    pub fn start_with(options: &Options) -> Smtp {
        let python = venv_python();
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("smtp_server.py");
        std::fs::write(&script, SERVER).expect("write the SMTP server script");
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).expect("mkdir mail");
        let port = super::free_port();
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(&out);
        if let Some((user, password)) = &options.auth {
            cmd.args(["--auth", &format!("{user}:{password}")]);
        }
        if options.starttls {
            cmd.arg("--starttls").arg(dir.path());
        }
        let log = dir.path().join("server.log");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create the server log"))
            .spawn()
            .expect("start the aiosmtpd test server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && line.trim() == "ready" {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "the aiosmtpd test server exited ({status}) before it listened on {port}:\n{err}"
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the aiosmtpd test server did not listen on 127.0.0.1:{port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtp { port, dir, child }
    }

    /// The CA that signed the STARTTLS certificate (PEM), for `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .expect("read the mail directory")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names.iter().map(|p| parse(p)).collect()
    }

    /// Waits until at least `n` messages arrived (panics after `within`, naming what did).
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if start.elapsed() > within {
                let subjects: Vec<(&Vec<String>, &String)> =
                    got.iter().map(|m| (&m.rcpt_tos, &m.subject)).collect();
                panic!(
                    "expected {n} messages within {within:?}, got {}: {subjects:?}",
                    got.len()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn parse(path: &Path) -> Received {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read a received message"))
            .expect("a received message is JSON");
    let raw = record["data"].as_str().unwrap_or_default().to_string();
    let message = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap_or_else(|| panic!("not a MIME message:\n{raw}"));
    let to = message
        .to()
        .map(|a| {
            a.iter()
                .filter_map(|addr| addr.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let content_type = mail_parser::MimeHeaders::content_type(message.root_part())
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
        .unwrap_or_default();
    let headers = message
        .headers_raw()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Received {
        mail_from: record["mail_from"].as_str().unwrap_or_default().to_string(),
        rcpt_tos: record["rcpt_tos"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        tls: record["tls"].as_bool().unwrap_or(false),
        user: record["user"].as_str().map(str::to_string),
        to,
        subject: message.subject().unwrap_or_default().to_string(),
        text: message
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        html: message
            .body_html(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        content_type,
        headers,
        raw,
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        // Closing stdin ends the server; kill it if it does not go.
        drop(self.child.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
