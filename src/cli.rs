//! The command line: parses arguments, loads the project, runs a command.
//!
//! Exit status: 0 success, 1 a runtime failure, 2 a usage or configuration error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::approval::{Transition, Vote};
use crate::audit::{Event, Kind};
use crate::config::{self, Project};
use crate::finding::Status;
use crate::output::{self, Format};
use crate::remediate;
use crate::scan::{self, Scanner};
use crate::store::{self, ActionOutcome, ActionState, FindingFilter, Store};

/// How long `vigilo run` waits for in-flight runs after the first signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// vigilo: compliance queries with a human in the loop.
///
/// Runs SQL compliance queries against Steampipe, PostgreSQL or SQLite, finds
/// the rows that are new since the last run (by primary key), and keeps each
/// as a finding until its row is gone.
#[derive(Debug, Parser)]
#[command(name = "vigilo", version, propagate_version = true)]
pub struct Cli {
    /// The project directory (config/, queries/, remediations/).
    #[arg(long, global = true, env = "VIGILO_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and check everything (config, queries, remediations, references, schedules, env); print a summary.
    Validate {
        /// Also ask Slack: the tokens, their scopes, and the email-only approvers' Slack users.
        #[arg(long)]
        online: bool,
    },
    /// Slack app setup.
    Slack {
        /// What to do.
        #[command(subcommand)]
        command: SlackCommand,
    },
    /// Run every enabled query on its schedule until SIGINT/SIGTERM (a second signal, or 30 s, ends it).
    Run,
    /// Run queries once now (default: all enabled), print inserted/updated/deleted per query.
    Scan {
        /// Show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Queries to run, by name (file stem).
        #[arg(value_name = "QUERY")]
        queries: Vec<String>,
    },
    /// List findings.
    Findings {
        /// Only this query's findings.
        #[arg(long, value_name = "QUERY")]
        query: Option<String>,
        /// Which findings.
        #[arg(long, value_enum, default_value_t = StatusFilter::Open)]
        status: StatusFilter,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Manage vigilo's stored state.
    State {
        /// What to do with it.
        #[command(subcommand)]
        command: StateCommand,
    },
    /// List approvals with their votes.
    Approvals {
        /// Which approvals.
        #[arg(long, value_enum, default_value_t = ApprovalStatusFilter::Pending)]
        status: ApprovalStatusFilter,
        /// Output format.
        #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
        format: AuditFormat,
    },
    /// Vote `approve` on an approval.
    Approve {
        /// The approval's id.
        id: i64,
        /// Who votes: an `[approver.NAME]`.
        #[arg(long = "as", value_name = "NAME")]
        by: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Vote `deny` on an approval.
    Deny {
        /// The approval's id.
        id: i64,
        /// Who votes: an `[approver.NAME]`.
        #[arg(long = "as", value_name = "NAME")]
        by: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Answer an approval: one option, several (multiselect), or `--text` (text input).
    Respond {
        /// The approval's id.
        id: i64,
        /// The option's value (several for a multiselect).
        #[arg(
            value_name = "VALUE",
            required_unless_present = "text",
            conflicts_with = "text"
        )]
        values: Vec<String>,
        /// The answer of a text input.
        #[arg(long)]
        text: Option<String>,
        /// Who votes: an `[approver.NAME]`.
        #[arg(long = "as", value_name = "NAME")]
        by: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run a failed (or unknown) action again.
    Retry {
        /// The action's id.
        action_id: i64,
    },
    /// Reverse an executed `aws.iam.update_access_key` (set the key's previous status back), as its own action.
    Undo {
        /// The action's id.
        action_id: i64,
        /// Who asks: an approver of that remediation.
        #[arg(long = "as", value_name = "NAME")]
        by: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// The findings report: summary, per-query findings, the approval log.
    Report {
        /// Output format (default: from the --output file's extension, else md).
        #[arg(long, value_enum)]
        format: Option<ReportFormat>,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only this period: a date (2026-11-01) or RFC 3339 time.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only this query.
        #[arg(long, value_name = "QUERY")]
        query: Option<String>,
    },
    /// List the live `vigilo run` processes on this store and what each holds.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
        format: AuditFormat,
    },
    /// Show the audit trail, or verify its hash chain.
    Audit {
        /// Output format of the listing.
        #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
        format: AuditFormat,
        /// What to do instead of listing.
        #[command(subcommand)]
        command: Option<AuditCommand>,
    },
    /// Start a project: a commented config, one query, one remediation, a .gitignore.
    Init {
        /// Where (created if needed; default: --dir or the current directory).
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
        /// Write the full example project instead (three queries, two databases, three AWS connections).
        #[arg(long)]
        example: bool,
    },
    /// Show the whole loop in a temporary project with nothing else running.
    Demo {
        /// Approve every request instead of asking at the terminal.
        #[arg(long)]
        yes: bool,
    },
}

/// `vigilo slack …`.
#[derive(Debug, Subcommand)]
pub enum SlackCommand {
    /// Print the Slack app manifest (JSON, which Slack also takes as YAML): scopes, the /vigilo
    /// command, interactivity over Socket Mode or at base_url's request URLs.
    Manifest {
        /// The `[integration.slack.NAME]` it is for (default: the only one).
        #[arg(long, value_name = "NAME")]
        integration: Option<String>,
    },
}

/// `vigilo audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exit 0 when intact, 1 naming the first bad entry.
    Verify,
    /// Write one JSON file per decided or expired approval under DIR
    /// (REMEDIATION/YYYY/MM/DD/ID-APPROVED|DENIED|EXPIRED-HH-MM-SS.json).
    Export {
        /// Where to write.
        #[arg(value_name = "DIR")]
        out: PathBuf,
    },
}

/// `--status` of `vigilo approvals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApprovalStatusFilter {
    /// Waiting for votes.
    Pending,
    /// Every approval.
    All,
}

/// `--format` of `vigilo audit` and `vigilo approvals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// Aligned columns.
    Table,
    /// A JSON array of entries (interface.md section 7).
    Json,
}

/// `vigilo report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One self-contained page with charts.
    Html,
    /// Markdown.
    Md,
    /// One row per finding.
    Csv,
    /// The summary and the full lists.
    Json,
}

/// `vigilo state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Forget a query's stored rows; its next run is a first run (findings are kept).
    Reset {
        /// The query's name.
        query: String,
    },
}

/// `--status` of `vigilo findings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    /// Open findings.
    Open,
    /// Resolved findings.
    Resolved,
    /// Findings whose risk is accepted for a while.
    Accepted,
    /// Every finding.
    All,
}

/// A failure that maps to an exit status.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// Parses the command line, runs it, and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // A forced stop must not wait for a store call still running on a blocking thread; it rolls back.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(errors) = e.downcast_ref::<config::ConfigErrors>() {
                eprintln!("{errors}");
                eprintln!(
                    "{} error{} found",
                    errors.0.len(),
                    if errors.0.len() == 1 { "" } else { "s" }
                );
                return ExitCode::from(2);
            }
            if let Some(usage) = e.downcast_ref::<UsageError>() {
                eprintln!("error: {usage}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match (&cli.command, cli.verbose) {
        (_, 2..) => "debug",
        (_, 1) | (Command::Run, 0) => "info",
        _ => "warn",
    };
    // The AWS SDK warns at every step of a credential chain that finds nothing (with Debug dumps
    // of each error); vigilo's own error says what failed and how to fix it. Its lines show at -vv.
    let aws = if cli.verbose >= 2 { "debug" } else { "error" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("vigilo={default},aws={aws},warn"))
    });
    // Colours only for a person at a terminal; logs collected from a pipe stay plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(crate::redact::StderrRedacted)
        .try_init();
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    match cli.command {
        Command::Validate { online } => validate(&dir, online).await,
        Command::Slack {
            command: SlackCommand::Manifest { integration },
        } => slack_manifest(&dir, integration.as_deref()),
        Command::Run => run_scheduler(&dir).await,
        Command::Scan { dry_run, queries } => scan_cmd(&dir, dry_run, &queries).await,
        Command::Findings {
            query,
            status,
            format,
        } => findings(&dir, query, status, format).await,
        Command::State {
            command: StateCommand::Reset { query },
        } => state_reset(&dir, &query).await,
        Command::Approvals { status, format } => {
            approvals(&dir, status == ApprovalStatusFilter::Pending, format).await
        }
        Command::Approve { id, by, reason } => {
            vote(&dir, id, Choice::Shorthand("approve"), by, reason).await
        }
        Command::Deny { id, by, reason } => {
            vote(&dir, id, Choice::Shorthand("deny"), by, reason).await
        }
        Command::Respond {
            id,
            values,
            text,
            by,
            reason,
        } => {
            let values = text.map_or(values, |t| vec![t]);
            vote(&dir, id, Choice::Values(values), by, reason).await
        }
        Command::Retry { action_id } => retry(&dir, action_id).await,
        Command::Status { format } => status(&dir, format).await,
        Command::Undo {
            action_id,
            by,
            reason,
        } => undo(&dir, action_id, &by, &reason).await,
        Command::Audit { format, command } => match command {
            None => audit_list(&dir, format).await,
            Some(AuditCommand::Verify) => audit_verify(&dir).await,
            Some(AuditCommand::Export { out }) => {
                let project = load(&dir)?;
                let store = open_settled(&project).await?;
                let files = crate::export::export(&project, store.as_ref(), &out).await?;
                println!("exported {} approval(s) to {}", files.len(), out.display());
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Report {
            format,
            output,
            since,
            query,
        } => report(&dir, format, output, since, query).await,
        Command::Demo { yes } => crate::demo::run(yes).await,
        Command::Init { path, example } => init(&path.unwrap_or(dir), example),
    }
}

/// `vigilo init`: writes the project and says what to do next.
fn init(dir: &Path, example: bool) -> Result<ExitCode> {
    use crate::init::{Exists, Template};
    let template = if example {
        Template::Example
    } else {
        Template::Scaffold
    };
    let files = match crate::init::write(dir, template) {
        Ok(files) => files,
        Err(e) => match e.downcast::<Exists>() {
            Ok(exists) => return Err(UsageError(exists.to_string()).into()),
            Err(e) => return Err(e),
        },
    };
    let mut out = std::io::stdout();
    writeln!(out, "created a vigilo project in {}:", dir.display())?;
    for f in files {
        writeln!(out, "  {f}")?;
    }
    writeln!(out, "next:")?;
    writeln!(out, "  cd {}", dir.display())?;
    writeln!(
        out,
        "  vigilo validate                  # checks every file; errors as FILE:LINE"
    )?;
    writeln!(
        out,
        "  export STEAMPIPE_URL=postgres://steampipe:PASSWORD@127.0.0.1:9193/steampipe   # steampipe service start prints it"
    )?;
    writeln!(
        out,
        "  vigilo scan --dry-run            # what it would find and ask, changing nothing"
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn report(
    dir: &Path,
    format: Option<ReportFormat>,
    output: Option<PathBuf>,
    since: Option<String>,
    query: Option<String>,
) -> Result<ExitCode> {
    use crate::report::{Format, Options, Report};
    let project = load(dir)?;
    let since = since
        .as_deref()
        .map(crate::report::parse_since)
        .transpose()
        .map_err(UsageError)?;
    if let Some(q) = &query
        && !project.queries.contains_key(q)
    {
        let known: Vec<&str> = project.queries.keys().map(String::as_str).collect();
        return Err(UsageError(format!(
            "--query {q}: no such query (queries: {})",
            known.join(", ")
        ))
        .into());
    }
    let by_extension = output
        .as_ref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .and_then(|e| match e.to_ascii_lowercase().as_str() {
            "html" | "htm" => Some(ReportFormat::Html),
            "csv" => Some(ReportFormat::Csv),
            "json" => Some(ReportFormat::Json),
            "md" | "markdown" => Some(ReportFormat::Md),
            _ => None,
        });
    let format = match format.or(by_extension).unwrap_or(ReportFormat::Md) {
        ReportFormat::Html => Format::Html,
        ReportFormat::Md => Format::Md,
        ReportFormat::Csv => Format::Csv,
        ReportFormat::Json => Format::Json,
    };
    let store = open_settled(&project).await?;
    let report = Report::collect(&project, store.as_ref(), Options { since, query }).await?;
    match &output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = crate::redact::lines(std::io::BufWriter::new(file));
            report.write(format, &mut out).await?;
            std::io::Write::flush(&mut out)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => report.write(format, &mut crate::redact::stdout()).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn load(dir: &Path) -> Result<Project> {
    let project = config::load(dir, &crate::action::REGISTRY)?;
    crate::redact::install(project.redactor());
    Ok(project)
}

async fn open_store(project: &Project) -> Result<Arc<dyn Store>> {
    Ok(store::open(&project.state.url).await?)
}

/// Records which project files were in force, as `config.loaded` (`channel`: the command).
async fn record_config_loaded(project: &Project, store: &dyn Store, channel: &str) -> Result<()> {
    let data = serde_json::json!({
        "dir": project.dir.display().to_string(),
        "files": project.file_digests(),
    });
    store
        .append_audit(vec![Event::system(Kind::ConfigLoaded, channel, data)])
        .await?;
    Ok(())
}

/// Opens the store and settles approvals whose deadline passed, also while vigilo was stopped.
async fn open_settled(project: &Project) -> Result<Arc<dyn Store>> {
    let store = open_store(project).await?;
    remediate::settle_due(store.as_ref()).await?;
    Ok(store)
}

async fn approvals(dir: &Path, pending_only: bool, format: AuditFormat) -> Result<ExitCode> {
    let project = load(dir)?;
    let store = open_settled(&project).await?;
    let list = store.approvals(pending_only).await?;
    let mut out = crate::redact::stdout();
    match format {
        AuditFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &list)?;
            writeln!(out)?;
        }
        AuditFormat::Table => output::write_approvals(&mut out, &list)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// What a vote command chose.
enum Choice {
    /// `approve` or `deny`: that option, else the one that does (not) run actions.
    Shorthand(&'static str),
    /// `respond ID VALUE...` or `respond ID --text T`: exactly this answer.
    Values(Vec<String>),
}

/// A usage error unless `by` is an `[approver.NAME]` of the project.
fn known_approver(project: &Project, by: &str) -> Result<()> {
    if project.approvers.contains_key(by) {
        return Ok(());
    }
    let known: Vec<&str> = project.approvers.keys().map(String::as_str).collect();
    Err(UsageError(format!(
        "--as {by}: no [approver.{by}] in the project (approvers: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
    .into())
}

async fn vote(
    dir: &Path,
    id: i64,
    choice: Choice,
    by: String,
    reason: Option<String>,
) -> Result<ExitCode> {
    let project = load(dir)?;
    known_approver(&project, &by)?;
    let store = open_settled(&project).await?;
    let values = match (choice, store.approval(id).await?) {
        (Choice::Values(values), _) => values,
        (Choice::Shorthand(option), None) => vec![option.to_string()],
        (Choice::Shorthand(word), Some(a)) => {
            match remediate::shorthand_option(&project, &a, word) {
                Ok(option) => vec![option],
                Err(why) => {
                    eprintln!("refused: {why}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    };
    let mut ballot = Vote::new(&by, values, "cli");
    ballot.reason = reason;
    // The account that typed `--as NAME`.
    ballot.identity = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .map(|u| format!("unix:{u}"));
    match store.vote(id, ballot).await? {
        Ok(Transition::VoteDecides {
            option, by: voters, ..
        }) => {
            println!("approval {id} decided: {option} (by {})", voters.join(", "));
            let acts = store
                .approval(id)
                .await?
                .is_some_and(|a| remediate::runs_actions(&project, &a.remediation, &option));
            let (progress, ran) = advance(project, Arc::clone(&store)).await?;
            let mut out = crate::redact::stdout();
            output::write_progress_failures(&mut out, &progress)?;
            output::write_action_outcomes(&mut out, &ran)?;
            if acts && progress.failed.is_empty() {
                // A `vigilo run` woken by the vote's NOTIFY may have taken the run first.
                let planned = store.actions_of_approval(id).await?;
                if planned.is_empty() {
                    writeln!(
                        out,
                        "approval {id}: another vigilo process is acting on it (`vigilo audit` shows the outcome)"
                    )?;
                }
                // Skipped ones (a recheck, a dry run) may have been planned here: not said.
                for a in planned.iter().filter(|a| {
                    a.state != ActionState::Skipped && !ran.iter().any(|(r, _)| *r == a.id)
                }) {
                    writeln!(out, "{}", ran_elsewhere(a.id, a.state))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(Transition::Vote(cast)) => {
            let option = cast.option;
            let a = store.approval(id).await?;
            let (have, need) = a
                .as_ref()
                .map(|a| {
                    let have = a.votes.iter().filter(|v| v.option == option).count();
                    (have, a.threshold(&cast.values))
                })
                .unwrap_or((1, 1));
            println!("recorded {by}'s vote {option} on approval {id} ({have} of {need} needed)");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Transition::TimeoutDecides { .. } | Transition::Expire) => {
            eprintln!("refused: approval {id} ran out of time before this vote");
            Ok(ExitCode::from(1))
        }
        Err(refusal) => {
            eprintln!("refused: {refusal}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Moves remediations along once (as `vigilo run` does every second): plans, acts, notifies.
async fn advance(
    project: Project,
    store: Arc<dyn Store>,
) -> Result<(remediate::Progress, Vec<(i64, ActionOutcome)>)> {
    let scanner = Scanner::new(Arc::new(project), store)?;
    let targets = targets(&scanner)?;
    let done = remediate::step(&scanner, &crate::fleet::owner(), &targets).await?;
    drain(&scanner, &targets.http).await?;
    Ok(done)
}

/// Delivers the messages a one-shot command queued that only wait for an integration's pace
/// (Slack: one a second per channel), for up to two minutes; later retries are left to `vigilo run`.
async fn drain(scanner: &Scanner, client: &reqwest::Client) -> Result<()> {
    Ok(crate::notify::drain(
        scanner.project(),
        scanner.store().as_ref(),
        &crate::fleet::owner(),
        client,
        Duration::from_millis(1500),
        Duration::from_secs(120),
    )
    .await?)
}

/// What actions reach: the HTTP client and the project's AWS connections.
fn targets(scanner: &Scanner) -> Result<crate::action::Targets> {
    let http = reqwest::Client::builder()
        .build()
        .context("cannot build the HTTP client")?;
    Ok(crate::action::Targets::new(
        http,
        &scanner.project().aws_connections,
    ))
}

async fn retry(dir: &Path, action_id: i64) -> Result<ExitCode> {
    let project = load(dir)?;
    let store = open_settled(&project).await?;
    if let Err(why) = store.retry_action(action_id).await? {
        eprintln!("refused: {why}");
        return Ok(ExitCode::from(1));
    }
    println!("action {action_id} queued again");
    run_queued(project, store, action_id).await
}

/// Moves remediations along, prints what ran, and exits 0 when `action_id` succeeded or was skipped.
async fn run_queued(project: Project, store: Arc<dyn Store>, action_id: i64) -> Result<ExitCode> {
    let (_, ran) = advance(project, store.clone()).await?;
    output::write_action_outcomes(&mut crate::redact::stdout(), &ran)?;
    if let Some((_, outcome)) = ran.iter().find(|(id, _)| *id == action_id) {
        let ok = matches!(
            outcome,
            ActionOutcome::Succeeded(_) | ActionOutcome::Skipped(_)
        );
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    // Not run by this command: a `vigilo run` woken by the same transaction may have taken it.
    let state = store.action(action_id).await?.map(|a| a.state);
    let Some(state) = state else {
        return Ok(ExitCode::from(1));
    };
    println!("{}", ran_elsewhere(action_id, state));
    Ok(match state {
        ActionState::Succeeded
        | ActionState::Skipped
        | ActionState::Pending
        | ActionState::Started => ExitCode::SUCCESS,
        ActionState::Failed | ActionState::Unknown => ExitCode::from(1),
    })
}

/// What another vigilo process (a `vigilo run` woken by the same transaction's NOTIFY) did with
/// action `id`, which this command's own step did not run.
fn ran_elsewhere(id: i64, state: ActionState) -> String {
    match state {
        ActionState::Pending | ActionState::Started => format!(
            "action {id} is {}: another vigilo process is running it (`vigilo audit` shows its outcome)",
            state.as_str()
        ),
        ActionState::Failed => format!(
            "action {id} failed: another vigilo process ran it (vigilo retry {id} runs it again)"
        ),
        _ => format!(
            "action {id} {}: another vigilo process ran it",
            state.as_str()
        ),
    }
}

async fn undo(dir: &Path, action_id: i64, by: &str, reason: &str) -> Result<ExitCode> {
    let project = load(dir)?;
    known_approver(&project, by)?;
    if reason.trim().is_empty() {
        return Err(UsageError("--reason: say why the action is undone".into()).into());
    }
    let store = open_settled(&project).await?;
    let Some(action) = store.action(action_id).await? else {
        eprintln!("refused: action {action_id} does not exist");
        return Ok(ExitCode::from(1));
    };
    // The remediation it belongs to: its approval's, else its finding's query's.
    let remediation = match action.approval_id {
        Some(id) => store.approval(id).await?.map(|a| a.remediation),
        None => store
            .finding(action.finding_id)
            .await?
            .and_then(|f| project.queries.get(&f.query))
            .and_then(|q| q.remediation.clone()),
    };
    let Some(config) = remediation
        .as_deref()
        .and_then(|r| project.remediations.get(r))
    else {
        eprintln!(
            "refused: action {action_id} belongs to remediation {}, which is not in the project, so who may undo it is unknown",
            remediation.as_deref().unwrap_or("(unknown)")
        );
        return Ok(ExitCode::from(1));
    };
    // Its approvers; a remediation without [approval] has none, so any configured approver may.
    let allowed = config
        .approval
        .as_ref()
        .map(|a| remediate::expand_approvers(&project, &a.approvers));
    if let Some(allowed) = allowed.filter(|allowed| !allowed.iter().any(|a| a == by)) {
        eprintln!(
            "refused: {by} is not an approver of remediation {} (approvers: {})",
            remediation.unwrap_or_default(),
            allowed.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    let undo_id = match store
        .undo_action(action_id, by, reason, crate::action::undo)
        .await?
    {
        Ok(id) => id,
        Err(refusal) => {
            eprintln!("refused: {refusal}");
            return Ok(ExitCode::from(1));
        }
    };
    println!("action {undo_id} undoes action {action_id}");
    run_queued(project, store, undo_id).await
}

async fn audit_list(dir: &Path, format: AuditFormat) -> Result<ExitCode> {
    let project = load(dir)?;
    let store = open_store(&project).await?;
    let mut out = crate::redact::stdout();
    let entries = store::audit_entries(store.as_ref()).await?;
    match format {
        AuditFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &entries)?;
            writeln!(out)?;
        }
        AuditFormat::Table => output::write_audit(&mut out, &entries)?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(dir: &Path) -> Result<ExitCode> {
    let project = load(dir)?;
    let store = open_store(&project).await?;
    let result = store::verify_audit(store.as_ref()).await?;
    match result {
        Ok(n) => {
            println!("audit trail intact: {n} entries");
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("audit trail BROKEN at seq {}: {broken}", broken.seq());
            Ok(ExitCode::from(1))
        }
    }
}

fn slack_manifest(dir: &Path, integration: Option<&str>) -> Result<ExitCode> {
    use crate::slack::manifest;
    let project = load(dir)?;
    let chosen =
        manifest::integration(&project, integration).map_err(|e| UsageError(e.to_string()))?;
    let delivery = manifest::delivery(&project, chosen.as_ref().map(|(_, cfg)| *cfg));
    let how = match &delivery {
        manifest::Delivery::Socket => "Socket Mode (no inbound URL); create an app-level token with connections:write and set app_token".to_string(),
        manifest::Delivery::RequestUrls(base) => format!("request URLs under {base}; set signing_secret"),
    };
    eprintln!(
        "Slack app manifest for {}: {how}",
        chosen.map_or_else(
            || "this project".to_string(),
            |(n, _)| format!("integration.slack.{n}")
        )
    );
    let text = serde_json::to_string_pretty(&manifest::manifest(&delivery))?;
    writeln!(crate::redact::stdout(), "{text}")?;
    Ok(ExitCode::SUCCESS)
}

async fn validate(dir: &Path, online: bool) -> Result<ExitCode> {
    let p = load(dir)?;
    validate_summary(&p)?;
    let mut out = crate::redact::stdout();
    let mut notes = crate::slack::check::offline(&p);
    if online {
        notes.extend(crate::slack::check::online(&p).await);
    }
    for note in &notes {
        writeln!(out, "{note}")?;
    }
    let failed = notes
        .iter()
        .any(|n| matches!(n, crate::slack::check::Note::Error(_)));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints what `p` holds.
fn validate_summary(p: &Project) -> Result<()> {
    let names = |it: &mut dyn Iterator<Item = &String>| {
        let v: Vec<&str> = it.map(String::as_str).collect();
        if v.is_empty() {
            String::new()
        } else {
            format!(" ({})", v.join(", "))
        }
    };
    let mut out = crate::redact::stdout();
    let scheduled = p.enabled_queries().filter(|q| q.schedule.is_some()).count();
    let enabled = p.enabled_queries().count();
    writeln!(out, "{}: ok", p.dir.display())?;
    writeln!(
        out,
        "databases: {}{}",
        p.databases.len(),
        names(&mut p.databases.keys())
    )?;
    writeln!(
        out,
        "queries: {} ({enabled} enabled, {scheduled} scheduled){}",
        p.queries.len(),
        names(&mut p.queries.keys())
    )?;
    writeln!(
        out,
        "remediations: {}{}",
        p.remediations.len(),
        names(&mut p.remediations.keys())
    )?;
    writeln!(
        out,
        "aws connections: {}{}",
        p.aws_connections.len(),
        names(&mut p.aws_connections.keys())
    )?;
    writeln!(
        out,
        "integrations: {}{}",
        p.integrations.len(),
        names(&mut p.integrations.keys())
    )?;
    writeln!(
        out,
        "notifiers: {}{}",
        p.notifiers.len(),
        names(&mut p.notifiers.keys())
    )?;
    writeln!(
        out,
        "approvers: {}{}",
        p.approvers.len(),
        names(&mut p.approvers.keys())
    )?;
    writeln!(
        out,
        "groups: {}{}",
        p.groups.len(),
        names(&mut p.groups.keys())
    )?;
    let state = match &p.state.url {
        config::StoreUrl::Sqlite(path) => format!("sqlite {}", path.display()),
        config::StoreUrl::Postgres(_) => "postgres".to_string(),
    };
    writeln!(out, "state store: {state}")?;
    Ok(())
}

/// A progress bar on standard error for `n` queries, only on a terminal and outside CI.
fn scan_progress(n: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(n as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

async fn scan_cmd(dir: &Path, dry_run: bool, names: &[String]) -> Result<ExitCode> {
    let project = Arc::new(load(dir)?);
    let queries = scan::select_queries(&project, names).map_err(UsageError)?;
    let store = open_store(&project).await?;
    let scanner = Scanner::new(Arc::clone(&project), store)?;
    let mut out = crate::redact::stdout();
    if dry_run {
        let mut failed = false;
        for q in &queries {
            let start = match (&q.remediation, &q.notify) {
                (Some(r), _) => format!("start remediation {r}"),
                (None, Some(n)) => format!("notify {n}"),
                (None, None) => "no remediation".to_string(),
            };
            let preview = |f: &scan::DryFinding| {
                q.remediation
                    .as_deref()
                    .map_or_else(Vec::new, |r| remediate::preview(&project, r, &q.name, f))
            };
            match scanner.dry_run(q).await {
                Ok(dry) => output::write_dry_run(&mut out, &dry, &start, &preview)?,
                Err(e) => {
                    failed = true;
                    writeln!(out, "query {}: FAILED: {e}", q.name)?;
                }
            }
        }
        writeln!(out, "dry run: nothing was written")?;
        return Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    record_config_loaded(&project, scanner.store().as_ref(), "scan").await?;
    let progress = scan_progress(queries.len());
    let runs = scan::scan_all_with(&scanner, &queries, progress.as_ref()).await;
    output::write_scan(&mut out, &runs)?;
    drop(out);
    let targets = targets(&scanner)?;
    // Every new finding's remediation has started (and auto-remediations have run) on exit.
    let (progress, ran) =
        remediate::step_until_idle(&scanner, &crate::fleet::owner(), &targets).await?;
    drain(&scanner, &targets.http).await?;
    let mut out = crate::redact::stdout();
    if !progress.opened.is_empty() {
        writeln!(
            out,
            "{} approval(s) requested; see vigilo approvals",
            progress.opened.len()
        )?;
    }
    output::write_progress_failures(&mut out, &progress)?;
    output::write_action_outcomes(&mut out, &ran)?;
    let failed = runs.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        writeln!(out, "{failed} of {} queries failed", runs.len())?;
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn findings(
    dir: &Path,
    query: Option<String>,
    status: StatusFilter,
    format: Format,
) -> Result<ExitCode> {
    let project = load(dir)?;
    let store = open_store(&project).await?;
    let status = match status {
        StatusFilter::Open => Some(Status::Open),
        StatusFilter::Resolved => Some(Status::Resolved),
        StatusFilter::Accepted => Some(Status::Accepted),
        StatusFilter::All => None,
    };
    let list = store.findings(&FindingFilter { query, status }).await?;
    output::write_findings(&mut crate::redact::stdout(), &list, format)?;
    Ok(ExitCode::SUCCESS)
}

async fn state_reset(dir: &Path, query: &str) -> Result<ExitCode> {
    let project = load(dir)?;
    let store = open_store(&project).await?;
    let keys = store.reset_query(query).await?;
    if !project.queries.contains_key(query) {
        eprintln!("note: the project has no query named {query}");
    }
    println!("query {query}: forgot {keys} stored keys; its next run is a first run");
    Ok(ExitCode::SUCCESS)
}

/// `vigilo status`: the processes heard from within a lease, with their claims.
async fn status(dir: &Path, format: AuditFormat) -> Result<ExitCode> {
    let project = load(dir)?;
    let store = open_store(&project).await?;
    let live =
        crate::fleet::live(store.as_ref(), project.scheduler.lease, chrono::Utc::now()).await?;
    let mut out = crate::redact::stdout();
    match format {
        AuditFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &live)?;
            writeln!(out)?;
        }
        AuditFormat::Table => output::write_processes(&mut out, &live)?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_scheduler(dir: &Path) -> Result<ExitCode> {
    let project = Arc::new(load(dir)?);
    // SQLite is for one process: a second `vigilo run` on the file is refused before it opens it.
    let _lock = match &project.state.url {
        config::StoreUrl::Sqlite(path) => Some(crate::fleet::SqliteLock::acquire(path)?),
        config::StoreUrl::Postgres(_) => None,
    };
    let store = open_store(&project).await?;
    record_config_loaded(&project, store.as_ref(), "scheduler").await?;
    let member = crate::fleet::Member::new(
        project.server.as_ref().map(|s| s.listen.clone()),
        project.scheduler.lease,
    );
    member.join(store.as_ref()).await?;
    let beating = CancellationToken::new();
    let heartbeat = tokio::spawn(member.heartbeat(Arc::clone(&store), beating.clone()));
    let scanner = Arc::new(Scanner::new(Arc::clone(&project), store)?);
    let shutdown = CancellationToken::new();
    if let Some(server) = &project.server {
        let listener = tokio::net::TcpListener::bind(&server.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([server] listen)", server.listen))?;
        tracing::info!(listen = %server.listen, "HTTP server started");
        let state = crate::server::AppState::new(Arc::clone(&project), Arc::clone(scanner.store()));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::server::serve(listener, state, stop).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
    }
    for (name, integration) in &project.integrations {
        if let config::IntegrationConfig::Slack(cfg) = integration
            && cfg.app_token.is_some()
        {
            let state =
                crate::server::AppState::new(Arc::clone(&project), Arc::clone(scanner.store()));
            let socket =
                crate::slack::socket::run(state, name.clone(), cfg.clone(), shutdown.clone());
            tokio::spawn(socket);
        }
    }
    let mut scheduler = tokio::spawn(crate::scheduler::run(scanner, shutdown.clone()));
    let mut signals = Signals::new()?;
    tokio::select! {
        _ = &mut scheduler => return Ok(ExitCode::SUCCESS),
        name = signals.next() => tracing::info!(signal = name, "shutting down: waiting for runs in flight (a second signal ends now)"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = &mut scheduler => {
            // The heartbeat renewed the ticks in flight until they ended; now this process leaves.
            beating.cancel();
            let _ = heartbeat.await;
            tracing::info!("stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        name = signals.next() => {
            tracing::warn!(signal = name, "second signal: stopping now; runs in flight roll back");
            Ok(ExitCode::from(1))
        }
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("runs still in flight after 30 s: stopping now; they roll back");
            Ok(ExitCode::from(1))
        }
    }
}

/// SIGINT and SIGTERM, as one stream of signal names.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
