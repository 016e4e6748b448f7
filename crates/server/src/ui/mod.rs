//! The admin dashboard at `/ui` (docs/dashboard.md): HTML rendered on
//! the server from askama templates (which escape every value), htmx for
//! the user search, the stylesheet and htmx embedded in the binary.
//!
//! A page needs a session ([`session::Session`]), made by signing in with
//! the admin token; every form posts an anti-forgery token that must match
//! the session's. A session authorises `/ui` only: the JSON API still
//! wants the admin token itself. Every answer under `/ui` carries a
//! Content-Security-Policy that allows only this origin's scripts and
//! styles and no framing.

mod audit;
mod chart;
mod overview;
mod plans;
mod policy;
mod session;
mod users;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;
use crate::error::ApiError;

pub(crate) use session::{Session, UiState};

/// Where a sign-in leads, and where a missing session sends the browser.
const HOME: &str = "/ui";
const LOGIN: &str = "/ui/login";

/// Only this origin's scripts, styles, images and requests; forms post
/// only here; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("../../assets/app.css");
const HTMX: &str = include_str!("../../assets/htmx.min.js");

/// What every signed-in page shows around its content: the navigation
/// (with `section` marked), the sign-out form's anti-forgery token and a
/// notice from the action that led here.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    pub(crate) section: &'static str,
    pub(crate) csrf: String,
    pub(crate) notice: Option<String>,
}

impl Chrome {
    pub(crate) fn new(session: &Session, section: &'static str) -> Self {
        Chrome {
            section,
            csrf: session.csrf().to_owned(),
            notice: None,
        }
    }

    /// With the notice a redirect's `done` parameter names (fixed texts
    /// only: a link cannot make the page say something else).
    pub(crate) fn with_done(mut self, query: &Done) -> Self {
        self.notice = query.done.as_deref().and_then(notice).map(str::to_owned);
        self
    }
}

fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "plan" => "Plan saved.",
        "plan_created" => "Plan created.",
        "override" => "Override set.",
        "override_cleared" => "Override cleared.",
        "user_plan" => "Plan changed; the user's grace starts again.",
        "policy" => "Policy activated.",
        "shadow" => "Shadow policy set.",
        "shadow_cleared" => "Shadow policy cleared.",
        "rollback" => "Rolled back to the previous policy.",
        "redeliver" => "Deliveries scheduled again.",
        _ => return None,
    })
}

/// The query of a page a change redirects to: `done` names the notice.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

/// Who the audit log names for changes made here.
pub(crate) const ACTOR: &str = "admin (dashboard)";

/// What a path segment keeps as it is: letters, digits and `-._~`; the
/// rest (`/`, `?`, `#`, `%`, spaces, non-ASCII) is percent-encoded. The
/// templates use askama's `urlencode_strict`, which encodes the same.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An id as one segment of a path: an id may hold any character but a
/// control character.
pub(crate) fn segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// A redirect after a change (303, so the browser GETs the page), with the
/// notice to show there. `path` has no query; ids in it went through
/// [`segment`].
pub(crate) fn done(path: &str, what: &str) -> Response {
    Redirect::to(&format!("{path}?done={what}")).into_response()
}

/// Why a page cannot be shown: rendered as a page of its own with the
/// right status.
#[derive(Debug)]
pub(crate) enum UiError {
    /// No valid session: to the sign-in page (for a request htmx made,
    /// the whole page goes there, not the part it would swap).
    SignIn {
        /// The request came from htmx.
        htmx: bool,
    },
    /// A form without the session's anti-forgery token.
    Forgery,
    /// Anything else, as the API would answer it.
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Api(e)
    }
}

impl From<quota_store::StoreError> for UiError {
    fn from(e: quota_store::StoreError) -> Self {
        UiError::Api(e.into())
    }
}

impl From<askama::Error> for UiError {
    fn from(e: askama::Error) -> Self {
        UiError::Api(ApiError::internal(format!("cannot render the page: {e}")))
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage {
    status: u16,
    code: String,
    message: String,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            UiError::SignIn { htmx: false } => return Redirect::to(LOGIN).into_response(),
            UiError::SignIn { htmx: true } => {
                return ([("hx-redirect", LOGIN)], StatusCode::OK).into_response();
            }
            UiError::Forgery => (
                StatusCode::FORBIDDEN,
                "forbidden".to_owned(),
                "The form's anti-forgery token is missing or wrong. Nothing was changed; reload the page and try again.".to_owned(),
            ),
            UiError::Api(e) => (e.status, e.body.error.code.clone(), e.body.error.message.clone()),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            code,
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}

/// A rendered page.
pub(crate) fn render(page: &impl Template) -> Result<Response, UiError> {
    Ok(Html(page.render()?).into_response())
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

async fn htmx() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        HTMX,
    )
        .into_response()
}

/// The dashboard's routes, with its headers on every answer.
pub(crate) fn routes() -> Router<AppState> {
    let pages = Router::new()
        .route(LOGIN, get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route(HOME, get(overview::page))
        .route("/ui/plans", get(plans::list).post(plans::create))
        .route("/ui/plans/{plan_id}", get(plans::page).post(plans::save))
        .route("/ui/plans/{plan_id}/what-if", post(plans::what_if))
        .route("/ui/users", get(users::search))
        .route("/ui/users/{user_id}", get(users::page))
        .route("/ui/users/{user_id}/plan", post(users::set_plan))
        .route("/ui/users/{user_id}/overrides", post(users::set_override))
        .route(
            "/ui/users/{user_id}/overrides/clear",
            post(users::clear_override),
        )
        .route(
            "/ui/policy",
            get(policy::page)
                .post(policy::upload)
                .layer(axum::extract::DefaultBodyLimit::max(policy::UPLOAD_LIMIT)),
        )
        .route("/ui/policy/rollback", post(policy::rollback))
        .route("/ui/policy/shadow/clear", post(policy::clear_shadow))
        .route("/ui/audit", get(audit::page))
        .route("/ui/events", get(audit::events))
        .route("/ui/events/{event_id}", get(audit::event))
        .route("/ui/events/{event_id}/redeliver", post(audit::redeliver))
        .route("/ui/assets/app.css", get(stylesheet))
        .route("/ui/assets/htmx.min.js", get(htmx))
        .route(
            "/ui/",
            get(|| async { Redirect::permanent(HOME).into_response() }),
        );
    pages
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// A time (Unix ms) as `2026-12-01 10:15:00 UTC`.
pub(crate) fn when(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => ms.to_string(),
    }
}

/// A limit for people: `unlimited` for -1.
pub(crate) fn limit_text(limit: i64) -> String {
    if limit < 0 {
        "unlimited".to_owned()
    } else {
        limit.to_string()
    }
}
