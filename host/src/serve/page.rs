//! The API Keys page: three files embedded in the binary (no CDN, no
//! external font: it works offline), served with a strict Content Security
//! Policy, and the session endpoints it signs in with.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::session;
use super::{ApiError, ApiResult, App, body, json_response, lock};
use crate::admin::AdminToken;

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/app.css");

/// Scripts and styles only from this origin, nothing inline, no frames, no
/// forms elsewhere, no referrer: the token in a sign-in link's fragment
/// never leaves the page.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut r = (StatusCode::OK, text).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub async fn index() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX);
    // Not kept for the back button either: a new key on the page must not
    // come back from the back/forward cache.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    token: String,
}

fn session_json(token: &AdminToken, csrf: &str) -> serde_json::Value {
    json!({
        "csrf": csrf,
        "token": {
            "id": token.id,
            "name": token.name,
            "organization": token.organization,
            "read_only": token.read_only,
        },
        "idle_seconds": session::IDLE.as_secs(),
        "lifetime_seconds": session::LIFETIME.as_secs(),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the operation failed",
        )
    })?
}

/// `POST /v1/session {"token"}`: exchange a live admin token for a session
/// cookie and its CSRF token. The token is not kept.
pub async fn sign_in(State(app): State<Arc<App>>, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let req: SignIn = body(&headers, &bytes)?;
    let found = {
        let app = app.clone();
        blocking(move || Ok(lock(&app.admin).authenticate_admin(&req.token)?)).await?
    };
    let Some(token) = found else {
        return Err(ApiError::unauthenticated(
            "that is not a live admin token (kgadmin_…)",
        ));
    };
    // Signing in again ends the session this browser had (its CSRF token
    // proves it is this page's).
    if let Ok((old, _)) = app.sessions.resolve_any(
        &session::cookies(&headers),
        session::csrf(&headers).as_deref(),
    ) {
        app.sessions.close(&old);
    }
    let Some(new) = app.sessions.open(&token.id) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "no session could be opened; try again later",
        ));
    };
    tracing::info!(token = %token.id, "session opened");
    let mut r = json_response(StatusCode::CREATED, session_json(&token, &new.csrf));
    r.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(&headers, &new.cookie),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `GET /v1/session`: the session of this cookie and CSRF token (a
/// reloaded page asks whether its session, whose CSRF token it keeps in
/// `sessionStorage`, still lives). Without a live one: 200 with
/// `"session": null` (not a failed authentication: every first visit asks).
pub async fn session_info(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let none = || json_response(StatusCode::OK, json!({"session": null}));
    let cookies = session::cookies(&headers);
    let csrf = session::csrf(&headers);
    let Ok((_, id)) = app.sessions.resolve_any(&cookies, csrf.as_deref()) else {
        return Ok(none());
    };
    let token = {
        let app = app.clone();
        let id = id.clone();
        blocking(move || Ok(lock(&app.admin).live_admin_token(&id)?)).await?
    };
    let Some(token) = token else {
        app.sessions.close_token(&id);
        return Ok(none());
    };
    let mut r = json_response(
        StatusCode::OK,
        json!({"session": session_json(&token, csrf.as_deref().unwrap_or_default())}),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `DELETE /v1/session`: sign out (needs the CSRF header).
pub async fn sign_out(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let cookies = session::cookies(&headers);
    match app
        .sessions
        .resolve_any(&cookies, session::csrf(&headers).as_deref())
    {
        Ok((cookie, _)) => app.sessions.close(&cookie),
        Err(session::Refused::Unknown) => {}
        Err(session::Refused::Csrf) => {
            return Err(ApiError::forbidden(
                "signing out needs the session's X-Keygate-CSRF header",
            ));
        }
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie(&headers));
    Ok(r)
}
