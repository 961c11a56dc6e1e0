//! This process as a member of the fleet of `vigilo run` processes sharing a store.
//!
//! A member announces itself with a heartbeat row (id `HOST:PID`, host, pid, version, when
//! it started) every third of its lease; the same heartbeat renews the leases of the ticks it
//! runs. A process silent for a lease is taken for gone: its ticks go to another process
//! (see `scheduler`). `vigilo status` reads the rows; `/healthz` answers for this process
//! from its last heartbeat. SQLite stores refuse a second `vigilo run` ([`SqliteLock`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::store::fleet::{Process, ProcessStatus};

/// This process's last successful heartbeat (Unix milliseconds; 0: none yet).
static LAST_HEARTBEAT: AtomicI64 = AtomicI64::new(0);

/// The identity a process claims work under: host and pid.
///
/// Processes that share a store and report the same host name are assumed to share a
/// PID namespace (one machine); that is how a claim of a dead process is recognised.
pub fn owner() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// This machine's host name, as the kernel has it (`HOSTNAME` where /proc is missing).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether the process named by `owner` (`host:pid`) is certainly gone: same host, and no such process.
pub fn owner_is_gone(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    host == hostname()
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}

/// This process as `vigilo run` announces it, and the lease its claims live by.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its row.
    pub process: Process,
    /// How long its claims outlive its last heartbeat.
    pub lease: Duration,
}

impl Member {
    /// This process, serving HTTP on `listen` if it does, with claims that last `lease`.
    pub fn new(listen: Option<String>, lease: Duration) -> Member {
        let now = Utc::now();
        Member {
            process: Process {
                id: owner(),
                host: hostname(),
                pid: i64::from(std::process::id()),
                version: env!("CARGO_PKG_VERSION").to_string(),
                listen,
                started_at: now,
                heartbeat_at: now,
            },
            lease,
        }
    }

    /// Announces this process (its first heartbeat). A claim still held under its id belongs
    /// to an earlier process with the same host and pid (a restarted container is pid 1
    /// again), which is gone: its claims are freed first, so they are not renewed as ours.
    pub async fn join(&self, store: &dyn Store) -> Result<(), crate::store::StoreError> {
        let freed = store.release_claims(&self.process.id).await?;
        if freed > 0 {
            tracing::warn!(
                process = %self.process.id,
                claims = freed,
                "freed the claims of an earlier process with this host name and pid"
            );
        }
        self.beat(store).await
    }

    async fn beat(&self, store: &dyn Store) -> Result<(), crate::store::StoreError> {
        store.heartbeat(&self.process, self.lease).await?;
        LAST_HEARTBEAT.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        Ok(())
    }

    /// Beats every third of the lease until `shutdown`, then leaves the fleet (its row goes).
    pub async fn heartbeat(self, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.lease / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            if let Err(e) = self.beat(store.as_ref()).await {
                tracing::error!(error = %e, "heartbeat failed; this process's ticks are taken over if it stays silent for its lease");
            }
        }
        // Anything still claimed (a taken-over tick that never got to run) goes to the others now.
        if let Err(e) = store.release_claims(&self.process.id).await {
            tracing::warn!(error = %e, "could not free this process's claims; they end with its lease");
        }
        if let Err(e) = store.leave_fleet(&self.process.id).await {
            tracing::warn!(error = %e, "could not remove this process's heartbeat row");
        }
    }
}

/// How `/healthz` answers for this process: `Ok` with a line saying who it is, or `Err` with
/// why it is not well: the store does not answer, or (in `vigilo run`) its last heartbeat is
/// older than its lease, so the fleet may be taking its work over.
pub async fn health(store: &dyn Store, lease: Duration) -> Result<String, String> {
    store
        .ping()
        .await
        .map_err(|e| format!("state store unavailable: {e}"))?;
    let id = owner();
    let Some(beat) = last_heartbeat() else {
        return Ok(format!("ok {id}\n"));
    };
    let age = (Utc::now() - beat).to_std().unwrap_or_default();
    if age > lease {
        return Err(format!(
            "process {id}: last heartbeat {}s ago, longer than its lease of {}s\n",
            age.as_secs(),
            lease.as_secs()
        ));
    }
    Ok(format!("ok {id}, heartbeat {}ms ago\n", age.as_millis()))
}

/// When this process last recorded its heartbeat, if it has.
pub fn last_heartbeat() -> Option<DateTime<Utc>> {
    match LAST_HEARTBEAT.load(Ordering::Relaxed) {
        0 => None,
        ms => DateTime::from_timestamp_millis(ms),
    }
}

/// The processes of the fleet that are alive at `now` for a lease of `lease`: heard from within
/// it, and (on this host) still running.
pub async fn live(
    store: &dyn Store,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<ProcessStatus>, crate::store::StoreError> {
    let since = now - chrono::Duration::from_std(lease).unwrap_or_default();
    let mut all = store.processes(since).await?;
    all.retain(|p| !owner_is_gone(&p.process.id));
    Ok(all)
}

/// The exclusive lock `vigilo run` holds on a SQLite store (`FILE.lock` beside it): SQLite is
/// for one process, and a second one is refused with a message saying which pid has it.
#[derive(Debug)]
pub struct SqliteLock {
    /// Held open, locked, for the life of the process; the lock ends with it, even on SIGKILL.
    _file: File,
}

/// Why `vigilo run` may not use a SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process runs on it.
    #[error(
        "state store {store} is in use by another `vigilo run`{holder}; SQLite is for one process: stop that one, or use a PostgreSQL state store to run several (README: Running several processes)"
    )]
    Held {
        /// The store's file.
        store: String,
        /// ` (pid N)` when the lock file says.
        holder: String,
    },
    /// The lock file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl SqliteLock {
    /// Locks `store`'s lock file for this process, or says who holds it.
    pub fn acquire(store: &Path) -> Result<SqliteLock, LockError> {
        let path = lock_path(store);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                let pid = pid.trim();
                return Err(LockError::Held {
                    store: store.display().to_string(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        use std::io::Write;
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(SqliteLock { _file: file })
    }
}

/// `vigilo.db` → `vigilo.db.lock`.
fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_store_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("vigilo.db");
        let first = SqliteLock::acquire(&db).unwrap();
        let err = SqliteLock::acquire(&db).unwrap_err().to_string();
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        assert!(err.contains("SQLite is for one process"), "{err}");
        drop(first);
        SqliteLock::acquire(&db).unwrap();
    }
}
