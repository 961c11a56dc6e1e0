//! `vigilo run`: every enabled, scheduled query on its schedule.
//!
//! One task per query, so a query never runs twice at once in a process: the
//! task runs, then waits for the first tick after the run ended (ticks missed
//! while it ran are skipped and logged). A semaphore bounds how many queries run
//! together. A failing query logs, records its failure and waits for its next
//! tick; the others go on. Across processes sharing a store, the snapshot's
//! generation check lets only one of two racing runs commit.
//!
//! Shutdown: when `shutdown` is cancelled no new run starts; runs in flight
//! finish and commit. The caller decides how long to wait (see `cli`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Query;
use crate::scan::Scanner;
use crate::schedule::Schedule;

/// Runs every enabled query that has a schedule until `shutdown` is cancelled and in-flight runs end.
pub async fn run(scanner: Arc<Scanner>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(scanner.project().scheduler.max_concurrent));
    let mut tasks = JoinSet::new();
    let queries: Vec<Query> = scanner
        .project()
        .enabled_queries()
        .filter(|q| q.schedule.is_some())
        .cloned()
        .collect();
    tracing::info!(
        queries = queries.len(),
        max_concurrent = scanner.project().scheduler.max_concurrent,
        "scheduler started"
    );
    for query in queries {
        tasks.spawn(query_loop(
            Arc::clone(&scanner),
            query,
            Arc::clone(&limit),
            shutdown.clone(),
        ));
    }
    tasks.spawn(maintenance(Arc::clone(&scanner), shutdown.clone()));
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "a query task ended abnormally");
        }
    }
    tracing::info!("scheduler stopped");
}

async fn query_loop(
    scanner: Arc<Scanner>,
    query: Query,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
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
            permit = Arc::clone(&limit).acquire_owned() => permit,
        };
        let Ok(_permit) = permit else { return };
        let lag = Utc::now() - tick;
        tracing::debug!(query = %query.name, lag_ms = lag.num_milliseconds(), "query run starting");
        // Not raced against shutdown: a run in flight finishes and commits (or fails and changes nothing).
        scanner.run(&query).await;
    }
}

/// Every second: settle timeouts and crashed actions, open approvals, plan and run actions.
async fn maintenance(scanner: Arc<Scanner>, shutdown: CancellationToken) {
    let owner = crate::remediate::owner();
    let targets =
        crate::action::Targets::new(reqwest::Client::new(), &scanner.project().aws_connections);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match crate::remediate::step(&scanner, &owner, &targets).await {
            Ok((p, _)) => {
                for (id, subject) in &p.opened {
                    tracing::info!(approval = id, subject = %subject, "approval requested");
                }
            }
            Err(e) => tracing::error!(error = %e, "moving remediations along failed"),
        }
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
