//! What every handler of `vigilo run`'s server needs, the web pages' and Slack's alike: the
//! project, the store and the page templates. Its own module, so that Slack's routes use it
//! without importing the server that mounts them.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};

use crate::config::Project;
use crate::store::Store;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The loaded project (secrets, remediations).
    pub project: Arc<Project>,
    /// The state store.
    pub store: Arc<dyn Store>,
    /// Page templates, HTML-escaped.
    templates: Arc<Environment<'static>>,
}

impl AppState {
    /// State for `project` on `store`.
    pub fn new(project: Arc<Project>, store: Arc<dyn Store>) -> AppState {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // Templates are ours and fixed; a broken one fails the first request that uses it, and the tests.
        for (name, source) in [
            ("layout.html", include_str!("web/layout.html")),
            ("approval.html", include_str!("web/approval.html")),
            ("message.html", include_str!("web/message.html")),
            ("dashboard.html", include_str!("web/dashboard.html")),
            ("login.html", include_str!("web/login.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "page template does not parse");
            }
        }
        AppState {
            project,
            store,
            templates: Arc::new(env),
        }
    }

    /// `[server] api_token`, when set.
    pub(crate) fn api_token(&self) -> Option<&crate::config::Secret> {
        self.project
            .server
            .as_ref()
            .and_then(|srv| srv.api_token.as_ref())
    }

    pub(crate) fn render(
        &self,
        name: &str,
        ctx: minijinja::Value,
    ) -> Result<Html<String>, Box<Response>> {
        self.templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map(|page| Html(crate::redact::global().html(&page).into_owned()))
            .map_err(|e| {
                tracing::error!(template = name, error = %e, "cannot render page");
                Box::new((StatusCode::INTERNAL_SERVER_ERROR, "cannot render page").into_response())
            })
    }

    pub(crate) fn message(
        &self,
        status: StatusCode,
        title: &str,
        text: &str,
        approval_id: Option<i64>,
    ) -> Response {
        let class = if status.is_success() { "good" } else { "bad" };
        match self.render("message.html", context! { title, text, class, approval_id }) {
            Ok(html) => (status, html).into_response(),
            Err(r) => *r,
        }
    }
}
