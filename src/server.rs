//! The HTTP server of `vigilo run` (interface.md section 6).
//!
//! `GET /approvals/ID?token=T` renders the approval and changes nothing (link
//! scanners and previews must not vote); `POST /approvals/ID` records the vote of
//! the approver the token names. A bad, foreign or expired token gets 403 and
//! changes nothing. Pages are server-rendered templates, usable without
//! JavaScript. `/api/*` needs `Authorization: Bearer API_TOKEN`.

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use minijinja::context;
use minijinja::value::Serde;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::approval::{Transition, Vote};
use crate::finding::Status;
use crate::store::{FindingFilter, StoreError};
use crate::token::{self, TokenError};

pub use crate::state::AppState;

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", axum::routing::post(login))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/approvals/{id}", get(approval_page).post(approval_vote))
        .route("/api/findings", get(api_findings))
        .route("/api/approvals", get(api_approvals))
        .route("/api/audit", get(api_audit))
        .merge(crate::slack::routes::router())
        .with_state(state)
}

/// Serves on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn healthz(State(s): State<AppState>) -> Response {
    match crate::fleet::health(s.store.as_ref(), s.project.scheduler.lease).await {
        Ok(line) => (StatusCode::OK, line).into_response(),
        Err(why) => {
            tracing::error!(error = %why.trim_end(), "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, crate::redact::text(&why)).into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    match crate::metrics::render(&s.project, s.store.as_ref()).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: the state store failed");
            (StatusCode::SERVICE_UNAVAILABLE, "state store unavailable\n").into_response()
        }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
    /// The option an emailed link stands for: the page asks to confirm it.
    option: Option<String>,
}

#[derive(Deserialize)]
struct VoteForm {
    token: String,
    /// The chosen option(s): one for buttons and select, several for a multiselect.
    options: Vec<String>,
    /// A text input's answer.
    text: Option<String>,
    reason: Option<String>,
}

impl VoteForm {
    /// Reads the form's fields; `option` may repeat (a multiselect's checkboxes).
    fn parse(fields: Vec<(String, String)>) -> Result<VoteForm, String> {
        let (mut token, mut options, mut text, mut reason) = (None, Vec::new(), None, None);
        for (name, value) in fields {
            match name.as_str() {
                "token" => token = Some(value),
                "option" => options.push(value),
                "text" => text = Some(value),
                "reason" => reason = Some(value),
                _ => {}
            }
        }
        Ok(VoteForm {
            token: token.ok_or("the form has no token")?,
            options,
            text,
            reason,
        })
    }

    /// The answered values: the text, else the options.
    fn values(&self) -> Vec<String> {
        match &self.text {
            Some(text) => vec![text.clone()],
            None => self.options.clone(),
        }
    }
}

/// Checks a link token against `server.secret`; the error is the 403 page.
fn grant(s: &AppState, token: Option<&str>, id: i64) -> Result<token::Grant, Box<Response>> {
    let secret = s
        .project
        .server
        .as_ref()
        .and_then(|srv| srv.secret.as_ref());
    let Some(secret) = secret else {
        return Err(Box::new(s.message(
            StatusCode::FORBIDDEN,
            "Approval links are disabled",
            "This vigilo has no [server] secret, so it cannot check approval links.",
            Some(id),
        )));
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(Box::new(s.message(
            StatusCode::FORBIDDEN,
            "Link not valid",
            "This link has no token.",
            Some(id),
        )));
    };
    token::verify(secret.expose(), token, id, Utc::now()).map_err(|e| {
        let text = match e {
            TokenError::Expired => "This link has expired with its approval.",
            TokenError::OtherApproval => "This link belongs to another approval.",
            TokenError::Invalid => "This link is not valid.",
        };
        Box::new(s.message(StatusCode::FORBIDDEN, "Link not valid", text, Some(id)))
    })
}

async fn approval_page(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let grant = match grant(&s, q.token.as_deref(), id) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let (approval, finding) = match s.store.approval(id).await {
        Ok(Some(a)) => match s.store.finding(a.finding_id).await {
            Ok(f) => (a, f),
            Err(e) => return internal(&s, e),
        },
        Ok(None) => return s.message(StatusCode::NOT_FOUND, "No such approval", "", Some(id)),
        Err(e) => return internal(&s, e),
    };
    // A link for one option (from an email) preselects it; the page still only asks.
    let wanted = q.option.filter(|o| !o.is_empty());
    let chosen = wanted
        .as_deref()
        .and_then(|w| approval.options.iter().find(|o| o.value == w));
    let unknown_option = wanted.as_deref().filter(|_| chosen.is_none());
    match s.render(
        "approval.html",
        context! {
            approval => Serde(&approval),
            finding => Serde(&finding),
            approver => grant.approver,
            token => q.token,
            chosen => chosen.map(Serde),
            unknown_option,
        },
    ) {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], html).into_response(),
        Err(r) => *r,
    }
}

async fn approval_vote(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let f = match VoteForm::parse(fields) {
        Ok(f) => f,
        Err(why) => {
            return s.message(
                StatusCode::BAD_REQUEST,
                "Vote refused",
                why.as_str(),
                Some(id),
            );
        }
    };
    let grant = match grant(&s, Some(&f.token), id) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let mut vote = Vote::new(&grant.approver, f.values(), "web");
    vote.reason = f.reason.clone().filter(|r| !r.trim().is_empty());
    match s.store.vote(id, vote).await {
        Ok(Ok(Transition::VoteDecides { option, by, .. })) => s.message(
            StatusCode::OK,
            "Decided",
            &format!(
                "Your vote decided it: {option} (by {}). The actions run shortly.",
                by.join(", ")
            ),
            Some(id),
        ),
        Ok(Ok(t)) => s.message(
            StatusCode::OK,
            "Vote recorded",
            &format!(
                "{} answered {}. More approvals are needed before anything runs.",
                grant.approver,
                match &t {
                    Transition::Vote(v) => v.option.as_str(),
                    _ => "",
                }
            ),
            Some(id),
        ),
        Ok(Err(refusal)) => s.message(
            StatusCode::CONFLICT,
            "Vote refused",
            &refusal.to_string(),
            Some(id),
        ),
        Err(e) => internal(&s, e),
    }
}

fn internal(s: &AppState, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    s.message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The error is in vigilo's log.",
        None,
    )
}

/// How many findings the dashboard lists (the rest are counted).
const DASHBOARD_FINDINGS: usize = 200;

/// The name of the dashboard's session cookie.
const SESSION_COOKIE: &str = "vigilo_session";

/// The dashboard session cookie's value for `api_token`: an HMAC of it, never the token itself.
fn session_value(api_token: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(api_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"vigilo dashboard session");
    hex::encode(mac.finalize().into_bytes())
}

/// Whether the dashboard may be shown: no `api_token` configured, or the bearer token or the
/// session cookie. `Ok(true)` when the viewer is signed in with the token.
fn dashboard_access(s: &AppState, headers: &HeaderMap) -> Result<bool, ()> {
    let Some(token) = s.api_token() else {
        return Ok(false);
    };
    if authorized(s, headers).is_ok() {
        return Ok(true);
    }
    let want = session_value(token.expose());
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='));
    for (name, value) in cookies {
        if name == SESSION_COOKIE && constant_time_eq(value.as_bytes(), want.as_bytes()) {
            return Ok(true);
        }
    }
    Err(())
}

/// `GET /` filters.
#[derive(Deserialize, Default)]
struct DashboardQuery {
    query: Option<String>,
    severity: Option<String>,
    status: Option<String>,
}

async fn dashboard(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<DashboardQuery>,
) -> Response {
    let signed_in = match dashboard_access(&s, &headers) {
        Ok(signed_in) => signed_in,
        Err(()) => return login_page(&s, StatusCode::UNAUTHORIZED, None),
    };
    match dashboard_page(&s, filter, signed_in).await {
        Ok(r) => r,
        Err(e) => internal(&s, e),
    }
}

async fn dashboard_page(
    s: &AppState,
    filter: DashboardQuery,
    signed_in: bool,
) -> Result<Response, StoreError> {
    let now = chrono::Utc::now();
    let status = match filter.status.as_deref() {
        None | Some("") | Some("open") => Some(Status::Open),
        Some("resolved") => Some(Status::Resolved),
        Some("accepted") => Some(Status::Accepted),
        Some(_) => None,
    };
    let query = filter.query.clone().filter(|q| !q.is_empty());
    let severity = filter.severity.clone().filter(|q| !q.is_empty());
    let wanted = FindingFilter {
        query: query.clone(),
        status,
    };
    let (mut findings, mut matching) = (Vec::new(), 0usize);
    crate::report::for_each(s.store.as_ref(), &wanted, |f| {
        if severity
            .as_deref()
            .is_none_or(|sev| sev == f.severity.as_str())
        {
            matching += 1;
            if findings.len() < DASHBOARD_FINDINGS {
                findings.push(f.clone());
            }
        }
    })
    .await?;
    // Accepted risks are listed whatever the filter: who accepted what, why, until when.
    let (mut accepted, mut accepted_total) = (Vec::new(), 0usize);
    let accepted_filter = FindingFilter {
        query: None,
        status: Some(Status::Accepted),
    };
    crate::report::for_each(s.store.as_ref(), &accepted_filter, |f| {
        accepted_total += 1;
        if accepted.len() < DASHBOARD_FINDINGS {
            accepted.push(f.clone());
        }
    })
    .await?;
    let pending = s.store.approvals(true).await?;
    let votable: Vec<serde_json::Value> = pending
        .iter()
        .map(|a| {
            // Per-approver vote links, for a viewer signed in with the API token, when links can be signed.
            let links = if signed_in {
                crate::token::links(&s.project, a.id, &a.approvers, a.deadline)
            } else {
                Vec::new()
            };
            serde_json::json!({
                "approval": a,
                "links": links.iter().map(|(who, url)| serde_json::json!({"who": who, "url": url})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let actions = s.store.recent_actions(20).await?;
    let actions: Vec<serde_json::Value> = actions.iter().map(crate::report::action_json).collect();
    let (head, _) = s.store.audit_head().await?;
    let mut audit = s.store.audit_page((head - 20).max(0), 20).await?;
    audit.reverse();
    let mut queries = Vec::new();
    for q in s.project.queries.values() {
        let last = s.store.runs(Some(&q.name), 1).await?.into_iter().next();
        queries.push(serde_json::json!({
            "name": q.name,
            "title": q.title,
            "severity": q.severity.as_str(),
            "enabled": q.enabled,
            "schedule": q.schedule.as_ref().map(ToString::to_string),
            "next_run": q.schedule.as_ref().filter(|_| q.enabled).and_then(|sch| sch.next_for(&q.name, now)).as_ref().map(crate::timestamp::rfc3339),
            "last_run": last.map(|r| serde_json::json!({
                "at": crate::timestamp::rfc3339(&r.started_at),
                "status": r.status.as_str(),
                "rows": r.rows,
                "ms": (r.finished_at - r.started_at).num_milliseconds(),
                "error": r.error,
            })),
        }));
    }
    let ctx = context! {
        findings => Serde(&findings),
        matching,
        shown => findings.len(),
        accepted => Serde(&accepted),
        accepted_total,
        pending => Serde(&votable),
        actions => Serde(&actions),
        audit => Serde(&audit),
        queries => Serde(&queries),
        query_names => s.project.queries.keys().cloned().collect::<Vec<_>>(),
        filter_query => query.unwrap_or_default(),
        filter_severity => severity.unwrap_or_default(),
        filter_status => filter.status.unwrap_or_else(|| "open".into()),
        signed_in,
    };
    Ok(match s.render("dashboard.html", ctx) {
        Ok(html) => html.into_response(),
        Err(r) => *r,
    })
}

/// The sign-in form of a dashboard behind `api_token`.
fn login_page(s: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    match s.render("login.html", context! { error }) {
        Ok(html) => (status, html).into_response(),
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /login`: the API token, checked in constant time, sets the session cookie.
async fn login(State(s): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = s.api_token() else {
        return axum::response::Redirect::to("/").into_response();
    };
    if !constant_time_eq(form.token.trim().as_bytes(), token.expose().as_bytes()) {
        tracing::warn!("dashboard sign-in with a wrong token");
        return login_page(
            &s,
            StatusCode::UNAUTHORIZED,
            Some("That is not the API token."),
        );
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200",
        session_value(token.expose())
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}

/// `Authorization: Bearer API_TOKEN`, compared in constant time.
fn authorized(s: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(expected) = s
        .project
        .server
        .as_ref()
        .and_then(|srv| srv.api_token.as_ref())
    else {
        let disabled = (
            StatusCode::FORBIDDEN,
            "the API is disabled: set [server] api_token\n",
        );
        return Err(Box::new(disabled.into_response()));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response(),
        ))
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn api_findings(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    match s.store.findings(&FindingFilter::default()).await {
        Ok(list) => answer(&list),
        Err(e) => internal(&s, e),
    }
}

/// A JSON answer with secrets masked.
fn answer<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => Json(crate::redact::json(v)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn api_approvals(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    match s.store.approvals(false).await {
        Ok(list) => answer(&list),
        Err(e) => internal(&s, e),
    }
}

async fn api_audit(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    match crate::store::audit_entries(s.store.as_ref()).await {
        Ok(all) => answer(&all),
        Err(e) => internal(&s, e),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
