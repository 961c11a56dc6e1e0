//! Test support: fresh PostgreSQL databases on the local server, project directories.
#![allow(dead_code)]

pub mod aws;
pub mod recorder;
pub mod slack;
pub mod slack_socket;
pub mod smtp;

use std::path::{Path, PathBuf};

/// The admin connection used to create and drop test databases.
pub fn pg_admin_url() -> String {
    std::env::var("VIGILO_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A fresh PostgreSQL database, dropped when this value is dropped.
pub struct PgDb {
    /// The database name.
    pub name: String,
    /// A URL that connects to it.
    pub url: String,
}

async fn admin() -> tokio_postgres::Client {
    let url = pg_admin_url();
    let (client, conn) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is required for this test and is not reachable at {url}: {e}. \
             Start it (scripts/test does) or set VIGILO_TEST_PG."
        ),
    };
    tokio::spawn(conn);
    client
}

impl PgDb {
    /// Creates a database named `vigilo_<prefix>_<random>`.
    pub async fn new(prefix: &str) -> PgDb {
        let name = format!("vigilo_{prefix}_{}", uuid::Uuid::new_v4().simple());
        admin()
            .await
            .batch_execute(&format!("create database {name}"))
            .await
            .expect("create test database");
        let base = pg_admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{}", &base[..i], name),
            None => panic!("VIGILO_TEST_PG must end in /DATABASE: {base}"),
        };
        PgDb { name, url }
    }

    /// A connection to this database (its connection task spawned on the current runtime).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to test database");
        tokio::spawn(conn);
        client
    }

    /// Runs SQL in this database.
    pub async fn execute(&self, sql: &str) {
        self.client()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                admin()
                    .await
                    .batch_execute(&format!("drop database if exists {name} with (force)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// The Steampipe stand-in fixture shipped in ../shared/fixtures (or tests/fixtures when shared/ is absent).
pub fn steampipe_fixture() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in [
        root.join("../shared/fixtures/steampipe_aws_iam_access_key.sql"),
        root.join("tests/fixtures/steampipe_aws_iam_access_key.sql"),
    ] {
        if let Ok(s) = std::fs::read_to_string(&p) {
            return s;
        }
    }
    panic!(
        "the Steampipe fixture steampipe_aws_iam_access_key.sql is missing from ../shared/fixtures and tests/fixtures"
    )
}

/// Writes `files` (relative path → contents) under a new temporary project directory.
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let p: PathBuf = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    dir
}

/// Runs the `vigilo` binary on project `dir` with extra environment `env`.
pub fn vigilo_env(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vigilo"));
    cmd.arg("--dir").arg(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run vigilo")
}

/// Runs the `vigilo` binary on project `dir`.
pub fn vigilo(dir: &Path, args: &[&str]) -> std::process::Output {
    vigilo_env(dir, &[], args)
}

/// Exit status, stdout and stderr of a run, for assertion messages.
pub fn show(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir`, as paths relative to it with `/` separators, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if let Ok(rel) = path.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Whether `name` is `REMEDIATION/YYYY/MM/DD/ID-OUTCOME-HH-MM-SS.json` for these values.
pub fn is_export_name(name: &str, remediation: &str, id: i64, outcome: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_digit());
    parts.len() == 5
        && parts[0] == remediation
        && digits(parts[1], 4)
        && digits(parts[2], 2)
        && digits(parts[3], 2)
        && parts[4].starts_with(&format!("{id}-{outcome}-"))
        && parts[4].ends_with(".json")
        && parts[4].len() == format!("{id}-{outcome}-00-00-00.json").len()
}

/// A child process (`vigilo run`) stopped with SIGTERM and reaped when dropped.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Starts `vigilo run` on the project in `dir`, its output discarded.
pub fn run(dir: &Path) -> Running {
    run_env(dir, &[], std::process::Stdio::null())
}

/// Starts `vigilo -v run` with extra environment `env`, its stderr (the log) to `log`.
pub fn run_env(dir: &Path, env: &[(&str, &str)], log: std::process::Stdio) -> Running {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vigilo"));
    cmd.arg("--dir").arg(dir).args(["-v", "run"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(
        cmd.stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vigilo run"),
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `vigilo run`'s server answers `/healthz` with 200 on `port` (15 s at most).
pub async fn wait_healthy(port: u16) {
    let http = reqwest::Client::new();
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            assert_eq!(r.status(), 200, "/healthz");
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "vigilo run never answered /healthz on port {port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The hidden inputs of an HTML page's first form, as (name, value).
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let form = &html[html.find("<form").unwrap()..html.find("</form>").unwrap()];
    form.split("<input type=\"hidden\"")
        .skip(1)
        .map(|rest| {
            let attr = |name: &str| {
                let start = rest.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                rest[start..start + rest[start..].find('"').unwrap()].to_string()
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

/// Runs headless Chromium with the flags this machine needs, plus `args`.
pub fn chromium(profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1000,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!(
            "headless Chromium is required for this test (Debian package chromium; scripts/test installs it): {e}"
        ),
    }
}

/// Panics unless the PNG at `path` is more than 1% pixels different from its first pixel.
pub fn assert_not_blank(path: &Path) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("open the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let pixels = &buf[..info.buffer_size()];
    let step = info.color_type.samples();
    let first = &pixels[..step];
    let differing = pixels.chunks(step).filter(|p| *p != first).count();
    assert!(
        differing > pixels.len() / step / 100,
        "the screenshot {} is blank ({differing} pixels differ from the first)",
        path.display()
    );
}

/// Loads `url` in headless Chromium: asserts the DOM contains `expect`, the console logged no
/// error, and a screenshot is not blank; returns the DOM.
pub fn assert_renders_in_chromium(url: &str, expect: &str) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dom = chromium(
        &tmp.path().join("profile-dom"),
        &["--enable-logging=stderr", "--v=0", "--dump-dom", url],
    );
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        html.contains(expect),
        "{expect:?} not rendered: {}",
        show(&dom)
    );
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(
        !log.lines()
            .any(|l| l.contains("CONSOLE") || l.contains("Uncaught")),
        "console errors:\n{log}"
    );
    let shot = tmp.path().join("page.png");
    let out = chromium(
        &tmp.path().join("profile-shot"),
        &[&format!("--screenshot={}", shot.display()), url],
    );
    assert!(shot.exists(), "no screenshot: {}", show(&out));
    assert_not_blank(&shot);
    html
}

/// Waits until `child` (a `vigilo` started with `VIGILO_PAUSE_AT=point` and its stderr piped)
/// says it paused there, then SIGKILLs it at exactly that point.
pub fn kill_when_paused(mut child: std::process::Child, point: &str) {
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let start = std::time::Instant::now();
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        if line.contains(&format!("paused at {point}")) {
            break;
        }
        assert!(
            !line.is_empty() && start.elapsed() < std::time::Duration::from_secs(60),
            "vigilo never paused at {point}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The last audit entry (of `vigilo audit --format json`) of `kind` for approval `approval`.
pub fn last_entry(entries: &[serde_json::Value], kind: &str, approval: &str) -> serde_json::Value {
    entries
        .iter()
        .rev()
        .find(|e| e["kind"] == kind && e["approval_id"].as_i64() == approval.parse().ok())
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} for approval {approval}: {entries:#?}"))
}
