//! Browser sessions for the page: an admin token is exchanged once for a
//! session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind TLS), so
//! the page never keeps the token. The cookie alone authenticates nothing
//! and reveals nothing: every request made with it, `GET /v1/session`
//! included, must also carry the session's CSRF token in the
//! `X-Keygate-CSRF` header. The page keeps that token in `sessionStorage`,
//! which, unlike cookies, is not shared with other ports of the same host
//! (another local service there receives the cookie, not the token).
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
/// Sessions held at most (expired ones first, then the least recently
/// used, make room).
const MAX_SESSIONS: usize = 10_000;
/// Sessions one token holds at most (its least recently used makes room):
/// no token can fill the table and lock others out.
const MAX_PER_TOKEN: usize = 16;

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
        let oldest = |map: &HashMap<[u8; 32], Session>, of: Option<&str>| {
            map.iter()
                .filter(|(_, s)| of.is_none_or(|t| s.token_id == t))
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| *k)
        };
        if map.values().filter(|s| s.token_id == token_id).count() >= MAX_PER_TOKEN
            && let Some(k) = oldest(&map, Some(token_id))
        {
            map.remove(&k);
        }
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| alive(s));
            if map.len() >= MAX_SESSIONS
                && let Some(k) = oldest(&map, None)
            {
                map.remove(&k);
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

/// The well-formed session cookies of a request. More than one can come
/// (another service on this host, on another port or path, can set one):
/// each is tried, and only the one whose CSRF token the page sends is
/// used, so a planted cookie can neither lock the page out nor sign it in
/// as someone else.
pub fn cookies(headers: &HeaderMap) -> Vec<String> {
    let mut found = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        let Ok(text) = v.to_str() else { continue };
        for pair in text.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if name == COOKIE
                && value.len() == 64
                && value.bytes().all(|b| b.is_ascii_hexdigit())
                && found.len() < 8
            {
                found.push(value.to_string());
            }
        }
    }
    found
}

impl Sessions {
    /// The first of `cookies` that is a live session with this CSRF token.
    pub fn resolve_any(
        &self,
        cookies: &[String],
        csrf: Option<&str>,
    ) -> Result<(String, String), Refused> {
        let mut refused = Refused::Unknown;
        for c in cookies {
            match self.resolve(c, csrf) {
                Ok(id) => return Ok((c.clone(), id)),
                Err(Refused::Csrf) => refused = Refused::Csrf,
                Err(Refused::Unknown) => {}
            }
        }
        Err(refused)
    }
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
    fn a_planted_cookie_beside_the_real_one_changes_nothing() {
        let s = Sessions::default();
        let mine = s.open("mine").unwrap();
        let theirs = s.open("theirs").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "x=1; {COOKIE}={}; {COOKIE}={}; {COOKIE}=short",
                theirs.cookie, mine.cookie
            ))
            .unwrap(),
        );
        let found = cookies(&h);
        assert_eq!(found, [theirs.cookie.clone(), mine.cookie.clone()]);
        // The page's CSRF token picks its own session, whatever comes first.
        assert_eq!(
            s.resolve_any(&found, Some(&mine.csrf)),
            Ok((mine.cookie.clone(), "mine".to_string()))
        );
        assert_eq!(s.resolve_any(&found, None), Err(Refused::Csrf));
        assert_eq!(s.resolve_any(&[], Some(&mine.csrf)), Err(Refused::Unknown));
    }

    #[test]
    fn one_token_cannot_fill_the_table() {
        let s = Sessions::default();
        let first = s.open("flood").unwrap();
        for _ in 0..MAX_PER_TOKEN {
            s.open("flood").unwrap();
        }
        assert_eq!(
            s.resolve(&first.cookie, Some(&first.csrf)),
            Err(Refused::Unknown)
        );
        assert_eq!(lock(&s.map).len(), MAX_PER_TOKEN);
        let other = s.open("other").unwrap();
        assert!(s.resolve(&other.cookie, Some(&other.csrf)).is_ok());
    }

    #[test]
    fn the_cookie_is_secure_behind_tls() {
        let v = "a".repeat(64);
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
