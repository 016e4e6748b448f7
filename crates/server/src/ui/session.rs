//! Signing in and out of the dashboard, the session a page needs, and the
//! anti-forgery token every form carries.
//!
//! - The session cookie holds a random id; the store keeps only its
//!   sha256, with the admin token's sha256 it was made under (a session
//!   made under another admin token is not honoured, and is deleted at
//!   start). A fleet shares the store, so every host honours it.
//! - Signing in makes a new id (an old session sent along is deleted);
//!   signing out deletes it. Sessions expire after [`SESSION_TTL`].
//! - The cookie is `HttpOnly`, `SameSite=Strict`, scoped to `/ui`, and
//!   `Secure` when the request came over TLS through a proxy
//!   (`X-Forwarded-Proto: https` or `Forwarded: proto=https`).
//! - Each session has its own anti-forgery token; every form posts it and
//!   a form without it changes nothing. The sign-in form, made before any
//!   session, carries a token that must match a short-lived cookie of its
//!   own.
//! - Sign-in attempts are limited per client address ([`SIGN_IN_BURST`]
//!   at once, then one per [`SIGN_IN_EVERY`]), on each host.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use quota_store::UiSession;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{HOME, LOGIN, UiError};
use crate::AppState;
use crate::admin::random_hex;
use crate::connections::PeerAddr;
use crate::error::ApiError;
use crate::extract::{same_digest, token_sha256};
use quota_store::prelude::*;

const SESSION_COOKIE: &str = "quota_session";
const LOGIN_COOKIE: &str = "quota_login";

/// How long a session lasts from sign-in.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long the sign-in form's token is good for.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(600);

/// Sign-in attempts a client address may make at once.
pub(crate) const SIGN_IN_BURST: u32 = 5;
/// Then one more per this long.
pub(crate) const SIGN_IN_EVERY: Duration = Duration::from_secs(12);

/// Client addresses the sign-in limit keeps before it forgets those that
/// have recovered.
const ADDRESSES_KEPT: usize = 10_000;

/// What the dashboard keeps in memory on a host.
#[derive(Debug)]
pub(crate) struct UiState {
    sign_ins: DefaultKeyedRateLimiter<IpAddr>,
}

impl Default for UiState {
    fn default() -> Self {
        let quota = Quota::with_period(SIGN_IN_EVERY)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(SIGN_IN_BURST).unwrap_or(NonZeroU32::MIN));
        UiState {
            sign_ins: RateLimiter::keyed(quota),
        }
    }
}

/// A signed-in admin: the session's id hash and anti-forgery token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    id_sha256: String,
    csrf: String,
}

impl Session {
    /// The token this session's forms carry.
    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `token` is this session's anti-forgery token.
    pub(crate) fn check(&self, token: &str) -> Result<(), UiError> {
        same_token(token, &self.csrf)
    }
}

/// Whether a posted anti-forgery token is the expected one: not empty,
/// and compared in constant time.
fn same_token(posted: &str, expected: &str) -> Result<(), UiError> {
    if !posted.is_empty() && same_digest(&token_sha256(posted), &token_sha256(expected)) {
        Ok(())
    } else {
        Err(UiError::Forgery)
    }
}

/// The value of cookie `name`, if the request sent it.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the request reached a proxy over TLS.
fn over_tls(headers: &HeaderMap) -> bool {
    let says = |name: &str, test: &dyn Fn(&str) -> bool| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| test(&v.to_ascii_lowercase()))
    };
    says("x-forwarded-proto", &|v| v.trim() == "https")
        || says("forwarded", &|v| {
            v.split([';', ',']).any(|part| part.trim() == "proto=https")
        })
}

fn set_cookie(
    headers: &HeaderMap,
    (name, value): (&'static str, String),
    path: &'static str,
    ttl: Duration,
) -> (header::HeaderName, HeaderValue) {
    let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path(path)
        .max_age(cookie::time::Duration::seconds(seconds))
        .secure(over_tls(headers))
        .build();
    let value =
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""));
    (header::SET_COOKIE, value)
}

fn admin_sha256(state: &AppState) -> String {
    hex::encode(state.admin_token().sha256())
}

/// The session whose id the cookie holds, if it is valid now.
async fn session_of(headers: &HeaderMap, state: &AppState) -> Result<Option<Session>, UiError> {
    let Some(id) = cookie_value(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let id_sha256 = hex::encode(token_sha256(&id));
    let admin = admin_sha256(state);
    let found = state
        .blocking(move |engine| Ok(engine.store().ui_session(&id_sha256, engine.now_ms())?))
        .await?;
    Ok(found.filter(|s| s.admin_sha256 == admin).map(|s| Session {
        id_sha256: s.id_sha256,
        csrf: s.csrf_token,
    }))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let htmx = parts.headers.contains_key("hx-request");
        session_of(&parts.headers, state)
            .await?
            .ok_or(UiError::SignIn { htmx })
    }
}

/// A form posted by a signed-in admin, its anti-forgery token checked
/// before anything else is done with it.
#[derive(Debug)]
pub(crate) struct Posted<T> {
    pub(crate) session: Session,
    pub(crate) form: T,
}

/// A form's own fields beside the anti-forgery token (`csrf`) every form
/// carries; a form without one reads as an empty token.
#[derive(Debug, Deserialize)]
struct WithToken<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = UiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, UiError> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let axum::Form(posted) = axum::Form::<WithToken<T>>::from_request(request, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        session.check(&posted.csrf)?;
        Ok(Posted {
            session,
            form: posted.form,
        })
    }
}

/// A form with nothing but its token.
#[derive(Debug, Deserialize)]
pub(crate) struct Plain {}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    csrf: String,
    error: Option<&'static str>,
}

/// The sign-in form, with a fresh token in it and in a cookie.
fn login_form(
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&'static str>,
) -> Result<Response, UiError> {
    let csrf = random_hex(32)?;
    let page = LoginPage {
        csrf: csrf.clone(),
        error,
    };
    let cookie = set_cookie(headers, (LOGIN_COOKIE, csrf), LOGIN, LOGIN_FORM_TTL);
    Ok((status, [cookie], Html(page.render()?)).into_response())
}

/// `GET /ui/login`: the sign-in form (home when signed in already).
pub(crate) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    if session_of(&headers, &state).await?.is_some() {
        return Ok(Redirect::to(HOME).into_response());
    }
    login_form(&headers, StatusCode::OK, None)
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: the admin token for a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<axum::Extension<PeerAddr>>,
    form: Result<axum::Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Result<Response, UiError> {
    let address = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.0.ip());
    let sign_ins = &state.ui().sign_ins;
    if sign_ins.len() >= ADDRESSES_KEPT {
        // Addresses whose limit has recovered are forgotten, so many
        // addresses cannot grow the table for ever.
        sign_ins.retain_recent();
    }
    if let Err(not_until) = sign_ins.check_key(&address) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let mut response = UiError::Api(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many sign-in attempts from this address; wait a little and try again.",
        ))
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    }
    let axum::Form(form) = form.map_err(|e| ApiError::invalid(e.body_text()))?;
    let expected = cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    same_token(&form.csrf, &expected)?;
    if !same_digest(&token_sha256(&form.token), &state.admin_token().sha256()) {
        return login_form(
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    }
    let id = random_hex(32)?;
    let session = UiSession {
        id_sha256: hex::encode(token_sha256(&id)),
        csrf_token: random_hex(32)?,
        admin_sha256: admin_sha256(&state),
        created_ms: 0,
        expires_ms: 0,
    };
    let old = cookie_value(&headers, SESSION_COOKIE).map(|old| hex::encode(token_sha256(&old)));
    state
        .blocking(move |engine| {
            let store = engine.store();
            if let Some(old) = old {
                store.delete_ui_session(&old)?;
            }
            let now = engine.now_ms();
            let ttl = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
            let session = UiSession {
                created_ms: now,
                expires_ms: now.saturating_add(ttl),
                ..session
            };
            store.create_ui_session(&session, now)?;
            Ok(())
        })
        .await?;
    let cookies = [
        set_cookie(&headers, (SESSION_COOKIE, id), "/ui", SESSION_TTL),
        set_cookie(
            &headers,
            (LOGIN_COOKIE, String::new()),
            LOGIN,
            Duration::ZERO,
        ),
    ];
    Ok((AppendHeaders(cookies), Redirect::to(HOME)).into_response())
}

/// `POST /ui/logout`: ends the session.
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<Plain>,
) -> Result<Response, UiError> {
    let id = posted.session.id_sha256;
    state
        .blocking(move |engine| Ok(engine.store().delete_ui_session(&id)?))
        .await?;
    let cookie = set_cookie(
        &headers,
        (SESSION_COOKIE, String::new()),
        "/ui",
        Duration::ZERO,
    );
    Ok(([cookie], Redirect::to(LOGIN)).into_response())
}
