//! Browser sessions for the page: an admin token is exchanged once for a
//! session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind TLS), so
//! the page never keeps the token. The cookie alone authenticates nothing:
//! every request made with it must also carry the session's CSRF token in
//! the `X-Keygate-CSRF` header, which another site cannot read or set.
//! Sessions live in the service's memory (a restart signs everyone out);
//! each request asks whether the token behind the session is still live,
//! so revoking a token ends its sessions at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::lock;

/// The cookie's name.
pub const COOKIE: &str = "keygate_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-keygate-csrf";
/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(60 * 60);
/// And at the latest this long after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions held at most (expired ones are dropped first).
const MAX_SESSIONS: usize = 10_000;

struct Session {
    token_id: String,
    csrf: String,
    started: Instant,
    last: Instant,
}

/// The live sessions, by the SHA-256 of their cookie value (the value
/// itself is not kept).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// A new session: the cookie value and the CSRF token, both shown to the
/// browser once.
pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
}

/// Why a session credential was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No such session, or it expired.
    Unknown,
    /// The CSRF header is missing or wrong.
    Csrf,
}

fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    /// Open a session for a live token. `None` when the OS random source
    /// fails or the service holds too many live sessions.
    pub fn open(&self, token_id: &str) -> Option<NewSession> {
        let cookie = random_hex()?;
        let csrf = random_hex()?;
        let mut map = lock(&self.map);
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| alive(s));
            if map.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let now = Instant::now();
        map.insert(
            digest(&cookie),
            Session {
                token_id: token_id.to_string(),
                csrf: csrf.clone(),
                started: now,
                last: now,
            },
        );
        Some(NewSession { cookie, csrf })
    }

    /// The token id behind a session cookie, when the session is alive and
    /// `csrf` is its CSRF token (compared in constant time). A use renews
    /// the idle time.
    pub fn resolve(&self, cookie: &str, csrf: Option<&str>) -> Result<String, Refused> {
        let mut map = lock(&self.map);
        let key = digest(cookie);
        let Some(s) = map.get_mut(&key) else {
            return Err(Refused::Unknown);
        };
        if !alive(s) {
            map.remove(&key);
            return Err(Refused::Unknown);
        }
        let good: bool = csrf.is_some_and(|c| c.as_bytes().ct_eq(s.csrf.as_bytes()).into());
        if !good {
            return Err(Refused::Csrf);
        }
        s.last = Instant::now();
        Ok(s.token_id.clone())
    }

    /// The CSRF token of a live session (for a page reloaded with its
    /// cookie: the token is not kept anywhere in the browser but memory).
    pub fn csrf_of(&self, cookie: &str) -> Option<(String, String)> {
        let mut map = lock(&self.map);
        let key = digest(cookie);
        let s = map.get_mut(&key)?;
        if !alive(s) {
            map.remove(&key);
            return None;
        }
        s.last = Instant::now();
        Some((s.token_id.clone(), s.csrf.clone()))
    }

    /// End a session.
    pub fn close(&self, cookie: &str) {
        lock(&self.map).remove(&digest(cookie));
    }

    /// End every session of a token (it is no longer live).
    pub fn close_token(&self, token_id: &str) {
        lock(&self.map).retain(|_, s| s.token_id != token_id);
    }
}

fn alive(s: &Session) -> bool {
    s.last.elapsed() < IDLE && s.started.elapsed() < LIFETIME
}

/// The session cookie of a request, if it carries exactly one.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        for pair in v.to_str().ok()?.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if name == COOKIE {
                if found.is_some() {
                    return None;
                }
                found = Some(value.to_string());
            }
        }
    }
    found.filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The CSRF header of a request.
pub fn csrf(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Whether the request came over TLS (a proxy in front says so): the
/// cookie is then `Secure`.
fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(headers: &HeaderMap, value: &str) -> HeaderValue {
    let secure = if secure(headers) { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie(headers: &HeaderMap) -> HeaderValue {
    let secure = if secure(headers) { "; Secure" } else { "" };
    let text = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_needs_its_csrf_token_and_ends_when_closed() {
        let s = Sessions::default();
        let n = s.open("tok").unwrap();
        assert_eq!(n.cookie.len(), 64);
        assert_eq!(s.resolve(&n.cookie, Some(&n.csrf)), Ok("tok".to_string()));
        assert_eq!(s.resolve(&n.cookie, None), Err(Refused::Csrf));
        assert_eq!(s.resolve(&n.cookie, Some("x")), Err(Refused::Csrf));
        assert_eq!(s.resolve(&n.csrf, Some(&n.csrf)), Err(Refused::Unknown));
        s.close_token("other");
        assert!(s.resolve(&n.cookie, Some(&n.csrf)).is_ok());
        s.close(&n.cookie);
        assert_eq!(s.resolve(&n.cookie, Some(&n.csrf)), Err(Refused::Unknown));
    }

    #[test]
    fn only_one_well_formed_cookie_counts() {
        let mut h = HeaderMap::new();
        let v = "a".repeat(64);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={v}")).unwrap(),
        );
        assert_eq!(cookie(&h), Some(v.clone()));
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={v}; {COOKIE}={v}")).unwrap(),
        );
        assert_eq!(cookie(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}=short")).unwrap(),
        );
        assert_eq!(cookie(&h), None);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(set_cookie(&h, &v).to_str().unwrap().ends_with("; Secure"));
        assert!(
            set_cookie(&HeaderMap::new(), &v)
                .to_str()
                .unwrap()
                .contains("HttpOnly; SameSite=Strict")
        );
    }
}
