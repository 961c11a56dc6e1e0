//! `vigilo run`: every enabled, scheduled query on its schedule.
//!
//! One task per query, so a query never runs twice at once in a process: the
//! task runs, then waits for the first tick after the run ended (ticks missed
//! while it ran are skipped and logged). A semaphore bounds how many queries run
//! together. A failing query logs, records its failure and waits for its next
//! tick; the others go on.
//!
//! A fleet of processes on one store shares the ticks: each tick is claimed in the
//! store before it runs (`Fleet::claim_tick`), so it runs once in the fleet, in
//! whichever process claims it first; a tick is not claimed while another tick of
//! the same query still runs anywhere. A process that dies holding ticks has them
//! taken over by another once its claims are released (same host, pid gone) or its
//! lease passes ([`take_over`]); a run commits only while its claim holds, so a tick
//! never has two runs. SQLite stores, for one process, go through the same claims.
//!
//! Shutdown: when `shutdown` is cancelled no new run starts; runs in flight
//! finish and commit. The caller decides how long to wait (see `cli`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Query;
use crate::scan::Scanner;
use crate::schedule::Schedule;
use crate::store::Tick;
use crate::store::fleet::{TICK_HISTORY, work_signal};

/// What the query tasks of one process share.
struct Ticks {
    /// Runs the queries.
    scanner: Arc<Scanner>,
    /// This process's name in its claims (`HOST:PID`).
    owner: String,
    /// How long a tick claim lasts without a heartbeat.
    lease: Duration,
    /// Bounds how many queries run at once (`[scheduler] max_concurrent`).
    limit: Arc<Semaphore>,
    /// One lock per scheduled query: a tick taken over from a gone process and the query's
    /// own next tick never run at once in this process.
    running: HashMap<String, Arc<Mutex<()>>>,
}

impl Ticks {
    /// Runs `query` for `tick`, claimed by this process, once the query is not running here.
    async fn run_claimed(&self, query: &Query, tick: Tick) {
        let _running = match self.running.get(&query.name) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let lag = Utc::now() - tick.at;
        tracing::debug!(query = %query.name, lag_ms = lag.num_milliseconds(), "query run starting");
        // Not raced against shutdown: a run in flight finishes and commits (or fails and changes nothing).
        self.scanner.run_tick(query, tick).await;
    }
}

/// Runs every enabled query that has a schedule until `shutdown` is cancelled and in-flight runs end.
pub async fn run(scanner: Arc<Scanner>, shutdown: CancellationToken) {
    let project = Arc::clone(scanner.project());
    let mut tasks = JoinSet::new();
    let queries: Vec<Query> = project
        .enabled_queries()
        .filter(|q| q.schedule.is_some())
        .cloned()
        .collect();
    tracing::info!(
        queries = queries.len(),
        max_concurrent = project.scheduler.max_concurrent,
        "scheduler started"
    );
    let ticks = Arc::new(Ticks {
        scanner: Arc::clone(&scanner),
        owner: crate::fleet::owner(),
        lease: project.scheduler.lease,
        limit: Arc::new(Semaphore::new(project.scheduler.max_concurrent)),
        running: queries
            .iter()
            .map(|q| (q.name.clone(), Arc::default()))
            .collect(),
    });
    for query in queries {
        tasks.spawn(query_loop(Arc::clone(&ticks), query, shutdown.clone()));
    }
    tasks.spawn(take_over(Arc::clone(&ticks), shutdown.clone()));
    tasks.spawn(maintenance(Arc::clone(&scanner), shutdown.clone()));
    let listen = {
        let (scanner, shutdown) = (Arc::clone(&scanner), shutdown.clone());
        async move { scanner.store().listen_for_work(shutdown).await }
    };
    tasks.spawn(listen);
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "a query task ended abnormally");
        }
    }
    tracing::info!("scheduler stopped");
}

async fn query_loop(ticks: Arc<Ticks>, query: Query, shutdown: CancellationToken) {
    let Some(schedule) = query.schedule.clone() else {
        return;
    };
    let mut last_tick = Utc::now();
    loop {
        let Some(tick) = schedule.next_for(&query.name, last_tick.max(Utc::now())) else {
            tracing::warn!(query = %query.name, "schedule has no further run time");
            return;
        };
        let missed = missed_ticks(&schedule, &query.name, last_tick, Utc::now());
        if missed > 0 {
            tracing::warn!(query = %query.name, missed, "previous run outlasted its schedule; skipped ticks");
        }
        let wait = (tick - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        last_tick = tick;
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = Arc::clone(&ticks.limit).acquire_owned() => permit,
        };
        let Ok(_permit) = permit else { return };
        if let Some(tick) = claim(&ticks, &query.name, tick).await {
            paused_holding_a_tick().await;
            ticks.run_claimed(&query, tick).await;
        }
    }
}

/// A pause for crash tests (`VIGILO_PAUSE_AT=tick.claimed`, see `remediate::pause_point`): the
/// first query to claim a tick says so on stderr and waits there for good, holding its claim
/// (the heartbeat goes on renewing it), while the rest of the process works on, so a test can
/// SIGKILL a process in the middle of a run.
async fn paused_holding_a_tick() {
    static PAUSE: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::env::var("VIGILO_PAUSE_AT").is_ok_and(|p| p == "tick.claimed")
    });
    static ONCE: std::sync::Once = std::sync::Once::new();
    if !*PAUSE {
        return;
    }
    let mut first = false;
    ONCE.call_once(|| first = true);
    if first {
        eprintln!("vigilo: paused at tick.claimed (VIGILO_PAUSE_AT)");
        std::future::pending::<()>().await;
    }
}

/// Claims `query`'s tick at `at` for this process: `None` when another process has it, or
/// the query is still running somewhere, or the tick is too old to be told apart from ticks
/// already forgotten.
async fn claim(ticks: &Ticks, query: &str, at: DateTime<Utc>) -> Option<Tick> {
    let late = (Utc::now() - at).to_std().unwrap_or(Duration::ZERO);
    if late > TICK_HISTORY / 2 {
        tracing::warn!(query, tick = %at, late_s = late.as_secs(), "tick skipped: too late to run");
        return None;
    }
    let tick = Tick {
        at,
        by: ticks.owner.clone(),
    };
    match ticks
        .scanner
        .store()
        .claim_tick(query, &tick, ticks.lease)
        .await
    {
        Ok(true) => {
            crate::metrics::observe_tick("claimed");
            Some(tick)
        }
        Ok(false) => {
            crate::metrics::observe_tick("elsewhere");
            tracing::debug!(query, tick = %at, "tick taken by another process, or the query is still running");
            None
        }
        Err(e) => {
            tracing::error!(query, tick = %at, error = %e, "cannot claim the tick; it is skipped here");
            None
        }
    }
}

/// Every second: takes over the ticks of processes that are gone (their lease passed, or they
/// were released as dead), a batch of at most `max_concurrent` at a time, and runs them.
async fn take_over(ticks: Arc<Ticks>, shutdown: CancellationToken) {
    let store = Arc::clone(ticks.scanner.store());
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut runs = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => {}
        }
        while runs.try_join_next().is_some() {}
        // At most a batch waiting here at a time; they queue for permits with the query loops
        // (the semaphore is fair), as a tick of this process's own would.
        let room = ticks
            .scanner
            .project()
            .scheduler
            .max_concurrent
            .saturating_sub(runs.len());
        if room == 0 {
            continue;
        }
        let taken = match store.take_over_ticks(&ticks.owner, ticks.lease, room).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::error!(error = %e, "cannot look for ticks of gone processes");
                continue;
            }
        };
        for (name, at) in taken {
            let tick = Tick {
                at,
                by: ticks.owner.clone(),
            };
            let query = ticks.scanner.project().queries.get(&name).cloned();
            let Some(query) = query.filter(|q| q.enabled && q.schedule.is_some()) else {
                tracing::warn!(query = %name, tick = %at, "a gone process's tick of a query this project does not schedule: dropped");
                if let Err(e) = store.drop_tick(&name, &tick).await {
                    tracing::error!(query = %name, error = %e, "cannot drop the tick");
                }
                continue;
            };
            tracing::warn!(query = %name, tick = %at, "taking over the tick of a process that is gone");
            crate::metrics::observe_tick("taken_over");
            let ticks = Arc::clone(&ticks);
            runs.spawn(async move {
                let Ok(_permit) = Arc::clone(&ticks.limit).acquire_owned().await else {
                    return;
                };
                ticks.run_claimed(&query, tick).await;
            });
        }
    }
    while runs.join_next().await.is_some() {}
}

/// Every second, at once when work is signalled (a decision, a requested run; see
/// [`work_signal`]), and again at once after a pass that found work: settle timeouts and
/// crashed actions, open approvals, plan actions and deliver messages; beside it, in a loop of
/// its own ([`run_actions`]), run the planned actions. The two share this task, so a shutdown
/// lets the pass and the batch in flight end.
async fn maintenance(scanner: Arc<Scanner>, shutdown: CancellationToken) {
    let owner = crate::fleet::owner();
    let targets =
        crate::action::Targets::new(reqwest::Client::new(), &scanner.project().aws_connections);
    let actions_due = Notify::new();
    tokio::join!(
        move_runs(&scanner, &owner, &targets, &actions_due, &shutdown),
        run_actions(&scanner, &owner, &targets, &actions_due, &shutdown),
    );
}

/// Moves remediation runs along (`remediate::plan_step`) and delivers due messages; wakes
/// [`run_actions`] after every pass, since a pass may have planned actions (or a retry or undo
/// may have queued one).
async fn move_runs(
    scanner: &Scanner,
    owner: &str,
    targets: &crate::action::Targets,
    actions_due: &Notify,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A pass takes a batch of runs and messages; after one that found work, the next goes at once.
    let mut busy = false;
    loop {
        let wake = async {
            tokio::select! {
                _ = tick.tick() => {}
                _ = work_signal().notified() => {}
            }
        };
        if !next_pass(busy, shutdown, wake).await {
            return;
        }
        let (project, store) = (scanner.project().as_ref(), scanner.store().as_ref());
        let pass = match crate::remediate::plan_step(scanner, owner, targets).await {
            Ok(p) => {
                for (id, subject) in &p.opened {
                    tracing::info!(approval = id, subject = %subject, "approval requested");
                }
                !p.opened.is_empty() || p.planned > 0
            }
            Err(e) => {
                tracing::error!(error = %e, "moving remediations along failed");
                false
            }
        };
        actions_due.notify_one();
        let sent = match crate::notify::deliver(project, store, owner, &targets.http).await {
            Ok(sent) => !sent.is_empty(),
            Err(e) => {
                tracing::error!(error = %e, "delivering messages failed");
                false
            }
        };
        busy = pass || sent;
    }
}

/// Runs planned actions (`remediate::execute_pending`, a claimed batch at a time) whenever
/// [`move_runs`] says there may be some, and again at once after a batch; a batch that ran
/// anything raises the [`work_signal`], since finished actions release their run's messages.
async fn run_actions(
    scanner: &Scanner,
    owner: &str,
    targets: &crate::action::Targets,
    actions_due: &Notify,
    shutdown: &CancellationToken,
) {
    let store = scanner.store().as_ref();
    let mut busy = false;
    loop {
        if !next_pass(busy, shutdown, actions_due.notified()).await {
            return;
        }
        busy = match crate::remediate::execute_pending(store, owner, targets).await {
            Ok(ran) => !ran.is_empty(),
            Err(e) => {
                tracing::error!(error = %e, "running actions failed");
                false
            }
        };
        if busy {
            work_signal().notify_one();
        }
    }
}

/// Whether a loop of [`maintenance`] makes another pass: at once after a pass that found work
/// (`busy`), else when `wake` fires; false once `shutdown` is cancelled.
async fn next_pass(
    busy: bool,
    shutdown: &CancellationToken,
    wake: impl std::future::Future<Output = ()>,
) -> bool {
    if busy {
        return !shutdown.is_cancelled();
    }
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = wake => true,
    }
}

/// How many ticks fell strictly between `last` and `now` (runs skipped because the previous one ran long).
fn missed_ticks(
    schedule: &Schedule,
    query: &str,
    last: chrono::DateTime<Utc>,
    now: chrono::DateTime<Utc>,
) -> usize {
    let mut n = 0;
    let mut t = last;
    while let Some(next) = schedule.next_for(query, t) {
        if next >= now || n >= 1000 {
            break;
        }
        n += 1;
        t = next;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_ticks_counts_skipped_runs() {
        let s: Schedule = "1s".parse().unwrap();
        let t0 = Utc::now();
        assert_eq!(missed_ticks(&s, "q", t0, t0), 0);
        assert!(missed_ticks(&s, "q", t0, t0 + chrono::Duration::seconds(5)) >= 4);
    }
}
