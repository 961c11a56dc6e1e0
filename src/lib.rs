//! vigilo keeps cloud accounts compliant with a human in the loop.
//!
//! # Layout
//! - [`config`]: loads a project directory (config, queries, remediations) into a validated [`config::Project`].
//! - [`schedule`]: when a query runs (cron or interval).
//! - [`source`]: runs a user's SQL against PostgreSQL/Steampipe or SQLite and streams rows as JSON values.
//! - [`diff`]: primary-key change detection, streaming: a key and a hash per row in memory.
//! - [`store`]: the state store (snapshots, findings, runs) behind one trait, SQLite and PostgreSQL.
//! - [`scan`]: one run of one query: source → diff → store, in one transaction.
//! - [`remediate`]: moves remediation runs along: requested → pending approval; timeouts.
//! - [`scheduler`]: `vigilo run`: every enabled query on its schedule, bounded, with graceful shutdown.
//! - [`fleet`]: this process in the fleet sharing a store: heartbeat, liveness, SQLite's one-process lock.
//! - [`export`]: `vigilo audit export`: one evidence file per settled approval.
//! - [`finding`]: the finding record and its JSON shape; [`timestamp`]: how a time is written.
//! - [`action`]: rendering a decision's actions and running one (`http`); the only module that calls targets.
//! - [`approval`]: the approval state machine: who may vote, thresholds, timeouts.
//! - [`audit`]: the hash-chained audit trail: entries, hashing, verification.
//! - [`output`]: tables, JSON and CSV for the terminal.
//! - [`template`]: minijinja templates of remediation files, checked at load, strict when rendered.
//! - [`demo`]: `vigilo demo`, the whole loop in a temporary project.
//! - [`init`]: `vigilo init`, a project to start from.
//! - [`server`]: the HTTP server of `vigilo run`: health, approval pages, API, dashboard.
//! - [`token`]: HMAC-signed approval link tokens (one approval, one approver, until the deadline) and the links that carry them.
//! - [`outbox`]: what each event queues for a notifier; [`notify`]: delivering it through the transports.
//! - [`aws`]: the AWS connections, their IAM calls and signed Query/S3 requests; `aws::error`: what an AWS failure means, in words.
//! - [`cause`]: the network failure or innermost message under a client library's error.
//! - [`cli`]: the command line.

pub mod action;
pub mod approval;
pub mod audit;
pub mod aws;
pub mod cause;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diff;
pub mod email;
pub mod export;
pub mod finding;
pub mod fleet;
pub mod init;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod outcome;
pub mod output;
pub mod redact;
pub mod remediate;
pub mod report;
pub mod scan;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod slack;
pub mod source;
pub mod state;
pub mod store;
pub mod template;
pub mod timestamp;
pub mod token;
